;; favour-small-rows, written by hand against ABI v1 (policies/ABI.md):
;; weight = 1 / (1 + size_bytes / 4096), so a 4 KiB row counts half as much
;; as an empty one and a 1 MiB row about 1/257 as much. It asks only for the
;; size column and leaves the scheduling hints at their defaults.
(module
  (memory (export "memory") 1)

  (func (export "shadowcast_abi_version") (result i32)
    i32.const 1)

  ;; bit 0: size_bytes
  (func (export "shadowcast_columns") (result i64)
    i64.const 1)

  ;; One region, reused for every batch, starting at the second page;
  ;; memory grows to fit it.
  (func (export "shadowcast_alloc") (param $size i32) (result i32)
    (local $missing i32)
    ;; pages needed = (65536 + size + 65535) >> 16, minus pages there
    (local.set $missing
      (i32.sub
        (i32.shr_u (i32.add (local.get $size) (i32.const 131071)) (i32.const 16))
        (memory.size)))
    (if (i32.gt_s (local.get $missing) (i32.const 0))
      (then
        (if (i32.eq (memory.grow (local.get $missing)) (i32.const -1))
          (then unreachable))))
    i32.const 65536)

  (func (export "shadowcast_decide") (param $batch i32) (result i32)
    (local $count i32) (local $i i32) (local $sizes i32) (local $weights i32)
    (local.set $count (i32.load offset=4 (local.get $batch)))
    (local.set $weights (i32.load offset=24 (local.get $batch)))
    (local.set $sizes (i32.load offset=40 (local.get $batch)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
        (f64.store
          (i32.add (local.get $weights) (i32.shl (local.get $i) (i32.const 3)))
          (f64.div
            (f64.const 1)
            (f64.add
              (f64.const 1)
              (f64.div
                (f64.convert_i64_u
                  (i64.load (i32.add (local.get $sizes) (i32.shl (local.get $i) (i32.const 3)))))
                (f64.const 4096)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    local.get $count)
)
