//! Generates the gRPC API's Rust code from `proto/shadowcast/v1/*.proto`,
//! with the vendored `protoc` so a build needs nothing installed.
//!
//! The `Executor` service's server is generated a second time, into
//! `OUT_DIR/wire/`, over the same message types except `LeaseResponse` and
//! `AcknowledgeRequest`, which the service writes and reads itself
//! (`service::wire`): the generated structs cost an allocation per key.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/shadowcast/v1/executor.proto",
        "proto/shadowcast/v1/routing.proto",
        "proto/shadowcast/v1/management.proto",
    ];
    // SAFETY: a build script is single-threaded; prost-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .codec_path("crate::service::codec::ApiCodec")
        .file_descriptor_set_path(out_dir.join("shadowcast_descriptor.bin"))
        .bytes(".")
        .compile_protos(&protos, &["proto"])?;
    let wire_dir = out_dir.join("wire");
    std::fs::create_dir_all(&wire_dir)?;
    tonic_prost_build::configure()
        .codec_path("crate::service::codec::ApiCodec")
        .build_client(false)
        .out_dir(wire_dir)
        .extern_path(".shadowcast.v1", "crate::service::proto")
        .extern_path(
            ".shadowcast.v1.LeaseResponse",
            "crate::service::wire::LeaseAnswer",
        )
        .extern_path(
            ".shadowcast.v1.AcknowledgeRequest",
            "crate::service::wire::AckRequest",
        )
        .compile_protos(&protos[..1], &["proto"])?;
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
