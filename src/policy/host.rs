//! The wasmtime host: one engine, modules compiled once (cached by their
//! SHA-256), instances that speak ABI v1 under a time and memory bound.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use shadowcast_policy::abi::{self, header, priority};
use wasmtime::{
    Engine, ExternType, FuncType, Instance, Linker, Memory, Module, ResourceLimiter, Store, Trap,
    TypedFunc, ValType,
};

use super::PolicyError;
use super::candidates::{Candidates, Decisions};

/// How often the engine's epoch advances: the resolution of call timeouts.
const TICK: Duration = Duration::from_millis(5);

/// Bounds on every policy call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PolicyLimits {
    /// Wall time one `decide` call may take.
    pub call_timeout: Duration,
    /// Linear memory an instance may grow to.
    pub memory_bytes: usize,
    /// Keys handed to one `decide` call; bigger sets are split.
    pub batch_keys: usize,
}

impl Default for PolicyLimits {
    fn default() -> Self {
        PolicyLimits {
            call_timeout: Duration::from_secs(1),
            memory_bytes: 64 << 20,
            batch_keys: 16_384,
        }
    }
}

impl PolicyLimits {
    pub fn check(self) -> Result<Self, PolicyError> {
        let invalid = |field: &'static str, problem: &str| {
            Err(PolicyError::InvalidLimit {
                field,
                problem: problem.to_string(),
            })
        };
        if self.call_timeout < TICK {
            return invalid("call_timeout", "must be at least 5 ms");
        }
        if self.memory_bytes < 1 << 16 {
            return invalid("memory_bytes", "must be at least one 64 KiB page");
        }
        if self.batch_keys == 0 || self.batch_keys > 1 << 22 {
            return invalid("batch_keys", "must be between 1 and 4194304");
        }
        Ok(self)
    }
}

/// Advances the engine's epoch every [`TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("policy-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        EpochTicker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The shared engine and its module cache; cheap to clone.
#[derive(Clone)]
pub struct PolicyHost {
    inner: Arc<HostInner>,
}

struct HostInner {
    engine: Engine,
    limits: PolicyLimits,
    /// Compiled modules by SHA-256, so reloading a module skips compilation.
    /// A std mutex: held only for a lookup or an insert, never across a call.
    modules: Mutex<HashMap<String, Module>>,
    /// Ends with the host.
    _ticker: EpochTicker,
}

/// A validated, compiled module.
#[derive(Clone)]
pub struct CompiledPolicy {
    pub name: String,
    /// Hex SHA-256 of the module's bytes.
    pub sha256: String,
    module: Module,
}

/// What an instance's store carries: the memory bound and whether it was hit.
struct InstanceState {
    memory_limit: usize,
    memory_limit_hit: bool,
}

impl ResourceLimiter for InstanceState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.memory_limit;
        self.memory_limit_hit |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 10_000)
    }
}

/// One live instance of a policy, reused across calls.
pub struct PolicyInstance {
    name: String,
    store: Store<InstanceState>,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    decide: TypedFunc<i32, i32>,
    error_message: Option<TypedFunc<(), i64>>,
    /// Input columns the policy asked for.
    columns: u64,
    limits: PolicyLimits,
}

impl PolicyHost {
    pub fn new(limits: PolicyLimits) -> Result<Self, PolicyError> {
        let limits = limits.check()?;
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| PolicyError::Engine(e.to_string()))?;
        Ok(PolicyHost {
            inner: Arc::new(HostInner {
                _ticker: EpochTicker::start(engine.clone()),
                engine,
                limits,
                modules: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn limits(&self) -> PolicyLimits {
        self.inner.limits
    }

    /// Compiles `bytes` (binary WebAssembly or WAT text) and checks its
    /// imports and exports against the ABI.
    pub fn compile(&self, name: &str, bytes: &[u8]) -> Result<CompiledPolicy, PolicyError> {
        let sha256 = format!("{:x}", Sha256::digest(bytes));
        let cached = self
            .inner
            .modules
            .lock()
            .expect("module cache")
            .get(&sha256)
            .cloned();
        let module = match cached {
            Some(module) => module,
            None => {
                let module =
                    Module::new(&self.inner.engine, bytes).map_err(|e| PolicyError::Compile {
                        policy: name.to_string(),
                        problem: format!("{e:#}"),
                    })?;
                check_interface(name, &module)?;
                self.inner
                    .modules
                    .lock()
                    .expect("module cache")
                    .insert(sha256.clone(), module.clone());
                module
            }
        };
        Ok(CompiledPolicy {
            name: name.to_string(),
            sha256,
            module,
        })
    }

    /// A fresh instance of `policy`, its ABI version checked and `config` accepted.
    pub fn instantiate(
        &self,
        policy: &CompiledPolicy,
        config: &[u8],
    ) -> Result<PolicyInstance, PolicyError> {
        let name = &policy.name;
        let limits = self.inner.limits;
        let mut store = Store::new(
            &self.inner.engine,
            InstanceState {
                memory_limit: limits.memory_bytes,
                memory_limit_hit: false,
            },
        );
        store.limiter(|state| state);
        store.set_epoch_deadline(deadline_ticks(limits.call_timeout));
        let linker: Linker<InstanceState> = Linker::new(&self.inner.engine);
        let instance = linker
            .instantiate(&mut store, &policy.module)
            .map_err(|e| call_error(name, "instantiation", &mut store, None, e, limits))?;
        let version = instance
            .get_typed_func::<(), i32>(&mut store, abi::export::ABI_VERSION)
            .expect("signature checked at compile time")
            .call(&mut store, ())
            .map_err(|e| call_error(name, abi::export::ABI_VERSION, &mut store, None, e, limits))?;
        if version != abi::VERSION as i32 {
            return Err(PolicyError::AbiVersion {
                policy: name.clone(),
                found: version,
                supported: abi::VERSION,
            });
        }
        let columns = match instance.get_typed_func::<(), i64>(&mut store, abi::export::COLUMNS) {
            Ok(f) => f
                .call(&mut store, ())
                .map_err(|e| call_error(name, abi::export::COLUMNS, &mut store, None, e, limits))?
                as u64,
            Err(_) => abi::ALL_COLUMNS,
        };
        let mut live = PolicyInstance {
            name: name.clone(),
            memory: instance
                .get_memory(&mut store, abi::export::MEMORY)
                .expect("memory export checked"),
            alloc: instance
                .get_typed_func(&mut store, abi::export::ALLOC)
                .expect("signature checked"),
            decide: instance
                .get_typed_func(&mut store, abi::export::DECIDE)
                .expect("signature checked"),
            error_message: instance
                .get_typed_func(&mut store, abi::export::ERROR_MESSAGE)
                .ok(),
            columns: columns & abi::ALL_COLUMNS,
            limits,
            store,
        };
        live.configure(&instance, config)?;
        Ok(live)
    }
}

fn deadline_ticks(timeout: Duration) -> u64 {
    (timeout.as_micros() / TICK.as_micros()).max(1) as u64 + 1
}

/// The exports ABI v1 requires or allows, with their signatures.
fn expected_exports() -> [(&'static str, FuncSignature, bool); 6] {
    use ValType::{I32, I64};
    [
        (abi::export::ABI_VERSION, (vec![], vec![I32]), true),
        (abi::export::ALLOC, (vec![I32], vec![I32]), true),
        (abi::export::DECIDE, (vec![I32], vec![I32]), true),
        (abi::export::COLUMNS, (vec![], vec![I64]), false),
        (abi::export::CONFIGURE, (vec![I32, I32], vec![I32]), false),
        (abi::export::ERROR_MESSAGE, (vec![], vec![I64]), false),
    ]
}

type FuncSignature = (Vec<ValType>, Vec<ValType>);

fn describe_signature((params, results): &FuncSignature) -> String {
    let list = |types: &[ValType]| {
        types
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("({}) -> ({})", list(params), list(results))
}

fn signature_of(ty: &FuncType) -> FuncSignature {
    (ty.params().collect(), ty.results().collect())
}

fn same_signature(a: &FuncSignature, b: &FuncSignature) -> bool {
    let same = |x: &[ValType], y: &[ValType]| {
        x.len() == y.len() && x.iter().zip(y).all(|(p, q)| ValType::eq(p, q))
    };
    same(&a.0, &b.0) && same(&a.1, &b.1)
}

/// Refuses imports (a policy gets no host functions) and missing or
/// mistyped exports.
fn check_interface(name: &str, module: &Module) -> Result<(), PolicyError> {
    if let Some(import) = module.imports().next() {
        return Err(PolicyError::Import {
            policy: name.to_string(),
            import: format!("{}::{}", import.module(), import.name()),
        });
    }
    let exports: HashMap<&str, ExternType> = module.exports().map(|e| (e.name(), e.ty())).collect();
    match exports.get(abi::export::MEMORY) {
        Some(ExternType::Memory(_)) => {}
        _ => {
            return Err(PolicyError::MissingExport {
                policy: name.to_string(),
                export: abi::export::MEMORY.to_string(),
                expected: "a linear memory".to_string(),
            });
        }
    }
    for (export, signature, required) in expected_exports() {
        match exports.get(export) {
            Some(ExternType::Func(ty)) if same_signature(&signature_of(ty), &signature) => {}
            None if !required => {}
            found => {
                let expected = format!("a function {}", describe_signature(&signature));
                return Err(match found {
                    Some(ExternType::Func(ty)) => PolicyError::ExportSignature {
                        policy: name.to_string(),
                        export: export.to_string(),
                        expected,
                        found: describe_signature(&signature_of(ty)),
                    },
                    _ => PolicyError::MissingExport {
                        policy: name.to_string(),
                        export: export.to_string(),
                        expected,
                    },
                });
            }
        }
    }
    Ok(())
}

/// Turns a failed call into the error that says why: out of time, out of
/// memory, a trap (with the guest's own message when it left one).
fn call_error(
    name: &str,
    during: &str,
    store: &mut Store<InstanceState>,
    error_message: Option<(&TypedFunc<(), i64>, Memory)>,
    error: wasmtime::Error,
    limits: PolicyLimits,
) -> PolicyError {
    let policy = name.to_string();
    if store.data().memory_limit_hit {
        return PolicyError::MemoryLimit {
            policy,
            during: during.to_string(),
            limit_bytes: limits.memory_bytes,
        };
    }
    if let Some(Trap::Interrupt) = error.downcast_ref::<Trap>() {
        return PolicyError::Timeout {
            policy,
            during: during.to_string(),
            limit: limits.call_timeout,
        };
    }
    let guest_message = error_message.and_then(|(f, memory)| guest_message(store, f, memory));
    PolicyError::Trap {
        policy,
        during: during.to_string(),
        trap: format!("{error:#}"),
        guest_message: guest_message.map(|m| format!(" ({m})")).unwrap_or_default(),
    }
}

/// The guest's explanation of its last failure, if it left one.
fn guest_message(
    store: &mut Store<InstanceState>,
    error_message: &TypedFunc<(), i64>,
    memory: Memory,
) -> Option<String> {
    store.set_epoch_deadline(2);
    let packed = error_message.call(&mut *store, ()).ok()? as u64;
    let (ptr, len) = ((packed >> 32) as usize, (packed as u32 as usize).min(4096));
    let bytes = memory.data(&*store).get(ptr..ptr + len)?;
    Some(String::from_utf8_lossy(bytes).into_owned()).filter(|m| !m.is_empty())
}

/// Where each part of one batch goes, as byte offsets from the region start.
struct Layout {
    total: usize,
    parts: HashMap<usize, usize>,
    features: Vec<Option<usize>>,
}

fn aligned(bytes: usize) -> usize {
    bytes.div_ceil(8) * 8
}

impl Layout {
    fn plan(candidates: &Candidates, range: &Range<usize>, columns: u64) -> Layout {
        let count = range.len();
        let wants = |column: abi::Column| columns & column.bit() != 0;
        let key_bytes = candidates.key_offsets[range.end] - candidates.key_offsets[range.start];
        let mut next = header::len(abi::FEATURE_NAMES.len());
        let mut parts = HashMap::new();
        let mut place = |field: usize, bytes: usize, parts: &mut HashMap<usize, usize>| {
            parts.insert(field, next);
            next += aligned(bytes);
        };
        place(header::WEIGHT, 8 * count, &mut parts);
        place(header::PRIORITY, 4 * count, &mut parts);
        place(header::NOT_BEFORE, 8 * count, &mut parts);
        place(header::DESTINATION, 4 * count, &mut parts);
        for (column, field, width) in [
            (abi::Column::SIZE_BYTES, header::SIZE_BYTES, 8),
            (abi::Column::HOT, header::HOT, 8),
            (abi::Column::CHURN, header::CHURN, 8),
            (abi::Column::EXPECTED_ACCESSES, header::EXPECTED_ACCESSES, 8),
            (abi::Column::TABLE, header::TABLE_IDS, 4),
            (abi::Column::TENANT, header::TENANT_IDS, 4),
        ] {
            if wants(column) {
                place(field, width * count, &mut parts);
            }
        }
        for (column, offsets_field, bytes_field, names) in [
            (
                abi::Column::TABLE,
                header::TABLE_NAMES_OFFSETS,
                header::TABLE_NAMES_BYTES,
                &candidates.tables,
            ),
            (
                abi::Column::TENANT,
                header::TENANT_NAMES_OFFSETS,
                header::TENANT_NAMES_BYTES,
                &candidates.tenants,
            ),
        ] {
            if wants(column) {
                place(offsets_field, 4 * names.offsets.len(), &mut parts);
                place(bytes_field, names.bytes.len(), &mut parts);
            }
        }
        if wants(abi::Column::KEY) {
            place(header::KEY_OFFSETS, 4 * (count + 1), &mut parts);
            place(header::KEY_BYTES, key_bytes, &mut parts);
        }
        let features = (0..abi::FEATURE_NAMES.len())
            .map(|i| {
                let column = abi::Column(abi::Column::FIRST_FEATURE + i as u8);
                wants(column).then(|| {
                    let at = next;
                    next += 8 * count;
                    at
                })
            })
            .collect();
        Layout {
            total: next,
            parts,
            features,
        }
    }
}

fn put<T: bytemuck::Pod>(region: &mut [u8], at: usize, values: &[T]) {
    let bytes: &[u8] = bytemuck::cast_slice(values);
    region[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Writes `values` one after another from `at`.
fn put_each<T: bytemuck::Pod>(
    region: &mut [u8],
    at: usize,
    values: impl ExactSizeIterator<Item = T>,
) {
    let bytes = &mut region[at..at + values.len() * std::mem::size_of::<T>()];
    match bytemuck::try_cast_slice_mut::<u8, T>(bytes) {
        Ok(slots) => slots.iter_mut().zip(values).for_each(|(slot, v)| *slot = v),
        Err(_) => bytes
            .chunks_exact_mut(std::mem::size_of::<T>())
            .zip(values)
            .for_each(|(chunk, v)| chunk.copy_from_slice(bytemuck::bytes_of(&v))),
    }
}

/// Appends `count` values of `T` read at `at` to `out`.
fn append<T: bytemuck::Pod>(region: &[u8], at: usize, count: usize, out: &mut Vec<T>) {
    let bytes = &region[at..at + count * std::mem::size_of::<T>()];
    match bytemuck::try_cast_slice::<u8, T>(bytes) {
        Ok(values) => out.extend_from_slice(values),
        Err(_) => out.extend(
            bytes
                .chunks_exact(std::mem::size_of::<T>())
                .map(bytemuck::pod_read_unaligned::<T>),
        ),
    }
}

/// Sets `count` values of `T` at `at` to `value`.
fn preset<T: bytemuck::Pod>(region: &mut [u8], at: usize, count: usize, value: T) {
    let bytes = &mut region[at..at + count * std::mem::size_of::<T>()];
    match bytemuck::try_cast_slice_mut::<u8, T>(bytes) {
        Ok(values) => values.fill(value),
        Err(_) => bytes
            .chunks_exact_mut(std::mem::size_of::<T>())
            .for_each(|chunk| chunk.copy_from_slice(bytemuck::bytes_of(&value))),
    }
}

impl PolicyInstance {
    fn configure(&mut self, instance: &Instance, config: &[u8]) -> Result<(), PolicyError> {
        let configure = instance
            .get_typed_func::<(i32, i32), i32>(&mut self.store, abi::export::CONFIGURE)
            .ok();
        let Some(configure) = configure else {
            if config.is_empty() {
                return Ok(());
            }
            return Err(PolicyError::Config {
                policy: self.name.clone(),
                message: "the module takes no configuration (it exports no shadowcast_configure)"
                    .into(),
            });
        };
        let ptr = self.reserve(config.len(), abi::export::CONFIGURE)?;
        self.memory.data_mut(&mut self.store)[ptr..ptr + config.len()].copy_from_slice(config);
        self.store
            .set_epoch_deadline(deadline_ticks(self.limits.call_timeout));
        let status = configure
            .call(&mut self.store, (ptr as i32, config.len() as i32))
            .map_err(|e| self.failure(abi::export::CONFIGURE, e))?;
        if status != 0 {
            let message = self
                .message()
                .unwrap_or_else(|| format!("error code {status}"));
            return Err(PolicyError::Config {
                policy: self.name.clone(),
                message,
            });
        }
        Ok(())
    }

    fn message(&mut self) -> Option<String> {
        let f = self.error_message.clone()?;
        guest_message(&mut self.store, &f, self.memory)
    }

    fn failure(&mut self, during: &str, error: wasmtime::Error) -> PolicyError {
        let messenger = self.error_message.clone();
        call_error(
            &self.name,
            during,
            &mut self.store,
            messenger.as_ref().map(|f| (f, self.memory)),
            error,
            self.limits,
        )
    }

    /// Asks the guest for `bytes` of room and checks what it gives back.
    fn reserve(&mut self, bytes: usize, during: &str) -> Result<usize, PolicyError> {
        self.store
            .set_epoch_deadline(deadline_ticks(self.limits.call_timeout));
        let size = i32::try_from(bytes).map_err(|_| PolicyError::BadRegion {
            policy: self.name.clone(),
            problem: format!("{bytes} bytes do not fit a 32-bit memory"),
        })?;
        let ptr = self
            .alloc
            .call(&mut self.store, size)
            .map_err(|e| self.failure(during, e))? as u32 as usize;
        let memory_len = self.memory.data_size(&self.store);
        if ptr == 0 || !ptr.is_multiple_of(8) || ptr + bytes > memory_len {
            return Err(PolicyError::BadRegion {
                policy: self.name.clone(),
                problem: format!(
                    "{} returned address {ptr} for {bytes} bytes: it must be non-zero, 8-byte aligned and inside the {memory_len}-byte memory",
                    abi::export::ALLOC
                ),
            });
        }
        Ok(ptr)
    }

    /// Runs the policy over keys `range` of `candidates`, checks every
    /// output and appends them to `out`, which holds the keys before `range`.
    pub fn decide(
        &mut self,
        candidates: &Candidates,
        range: Range<usize>,
        out: &mut Decisions,
    ) -> Result<(), PolicyError> {
        let count = range.len();
        let layout = Layout::plan(candidates, &range, self.columns);
        let base = self.reserve(layout.total, abi::export::ALLOC)?;
        let columns = self.columns;
        let region = &mut self.memory.data_mut(&mut self.store)[base..base + layout.total];
        write_batch(region, base, columns, candidates, &range, &layout);
        self.store
            .set_epoch_deadline(deadline_ticks(self.limits.call_timeout));
        let written = self
            .decide
            .call(&mut self.store, base as i32)
            .map_err(|e| self.failure(abi::export::DECIDE, e))?;
        if written < 0 {
            let message = self.message().unwrap_or_default();
            return Err(PolicyError::ErrorCode {
                policy: self.name.clone(),
                code: written,
                message,
            });
        }
        if written as usize != count {
            return Err(PolicyError::WrongCount {
                policy: self.name.clone(),
                expected: count,
                found: written as i64,
            });
        }
        let region = &self.memory.data(&self.store)[base..base + layout.total];
        append(
            region,
            layout.parts[&header::WEIGHT],
            count,
            &mut out.weight,
        );
        append(
            region,
            layout.parts[&header::PRIORITY],
            count,
            &mut out.priority,
        );
        append(
            region,
            layout.parts[&header::NOT_BEFORE],
            count,
            &mut out.not_before_us,
        );
        append(
            region,
            layout.parts[&header::DESTINATION],
            count,
            &mut out.destination,
        );
        check_outputs(&self.name, candidates, out, range)
    }
}

/// Lays keys `range` out in `region` (at guest address `base`) as ABI v1
/// describes, the outputs preset to their defaults (weight NaN, so an
/// unwritten weight is caught).
fn write_batch(
    region: &mut [u8],
    base: usize,
    columns: u64,
    candidates: &Candidates,
    range: &Range<usize>,
    layout: &Layout,
) {
    let count = range.len();
    let address = |offset: usize| (base + offset) as u32;
    region[..header::len(abi::FEATURE_NAMES.len())].fill(0);
    put(region, header::ABI_VERSION, &[abi::VERSION]);
    put(region, header::COUNT, &[count as u32]);
    put(region, header::NOW_US, &[candidates.now_us]);
    put(region, header::SUPPLIED, &[columns]);
    put(
        region,
        header::FEATURE_COUNT,
        &[abi::FEATURE_NAMES.len() as u32],
    );
    for (&field, &at) in &layout.parts {
        put(region, field, &[address(at)]);
    }
    put(
        region,
        header::TABLE_NAMES_COUNT,
        &[candidates.tables.len() as u32],
    );
    put(
        region,
        header::TENANT_NAMES_COUNT,
        &[candidates.tenants.len() as u32],
    );
    let at = |field: usize| layout.parts.get(&field).copied();
    let weights = at(header::WEIGHT).expect("outputs always placed");
    preset(region, weights, count, f64::NAN);
    let priorities = at(header::PRIORITY).expect("outputs always placed");
    preset(region, priorities, count, priority::NORMAL);
    let not_before = at(header::NOT_BEFORE).expect("outputs always placed");
    preset(region, not_before, count, 0i64);
    let destinations = at(header::DESTINATION).expect("outputs always placed");
    preset(region, destinations, count, abi::ANY_DESTINATION);
    if let Some(o) = at(header::SIZE_BYTES) {
        put(region, o, &candidates.size_bytes[range.clone()]);
    }
    if let Some(o) = at(header::HOT) {
        put(region, o, &candidates.hot[range.clone()]);
    }
    if let Some(o) = at(header::CHURN) {
        put(region, o, &candidates.churn[range.clone()]);
    }
    if let Some(o) = at(header::EXPECTED_ACCESSES) {
        put(region, o, &candidates.expected_accesses[range.clone()]);
    }
    for (ids_field, offsets_field, bytes_field, ids, names) in [
        (
            header::TABLE_IDS,
            header::TABLE_NAMES_OFFSETS,
            header::TABLE_NAMES_BYTES,
            &candidates.table_ids,
            &candidates.tables,
        ),
        (
            header::TENANT_IDS,
            header::TENANT_NAMES_OFFSETS,
            header::TENANT_NAMES_BYTES,
            &candidates.tenant_ids,
            &candidates.tenants,
        ),
    ] {
        if let Some(o) = at(ids_field) {
            put(region, o, &ids[range.clone()]);
            put(region, layout.parts[&offsets_field], &names.offsets);
            put(region, layout.parts[&bytes_field], &names.bytes);
        }
    }
    if let Some(o) = at(header::KEY_OFFSETS) {
        let first = candidates.key_offsets[range.start];
        let rebased = candidates.key_offsets[range.start..=range.end]
            .iter()
            .map(|offset| (offset - first) as u32);
        put_each(region, o, rebased);
        let bytes = &candidates.key_bytes[first..candidates.key_offsets[range.end]];
        put(region, layout.parts[&header::KEY_BYTES], bytes);
    }
    for (i, placed) in layout.features.iter().enumerate() {
        if let Some(o) = placed {
            put(region, header::FEATURES + 4 * i, &[address(*o)]);
            put(region, *o, &candidates.features[i][range.clone()]);
        }
    }
}

/// Every output of keys `range` is in range: finite weights ≥ 0, a known
/// priority class, a non-negative earliest time.
fn check_outputs(
    policy: &str,
    candidates: &Candidates,
    out: &Decisions,
    range: Range<usize>,
) -> Result<(), PolicyError> {
    let all_valid = out.weight[range.clone()]
        .iter()
        .fold(true, |ok, w| ok & w.is_finite() & (*w >= 0.0))
        && out.priority[range.clone()]
            .iter()
            .fold(true, |ok, p| ok & (*p <= priority::FIRST))
        && out.not_before_us[range.clone()]
            .iter()
            .fold(true, |ok, t| ok & (*t >= 0));
    if all_valid {
        return Ok(());
    }
    for index in range {
        let problem = if !out.weight[index].is_finite() || out.weight[index] < 0.0 {
            Some((
                "weight",
                format!("{}", out.weight[index]),
                "a finite number ≥ 0",
            ))
        } else if out.priority[index] > priority::FIRST {
            Some((
                "priority",
                out.priority[index].to_string(),
                "a class from 0 to 3",
            ))
        } else if out.not_before_us[index] < 0 {
            Some((
                "not_before_us",
                out.not_before_us[index].to_string(),
                "0 or a time after the epoch",
            ))
        } else {
            None
        };
        if let Some((field, value, expected)) = problem {
            return Err(PolicyError::BadOutput {
                policy: policy.to_string(),
                key: candidates.describe(index),
                index,
                field,
                value,
                expected,
            });
        }
    }
    Ok(())
}
