//! Generates the gRPC API's Rust code from `proto/shadowcast/v1/*.proto`,
//! with the vendored `protoc` so a build needs nothing installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/shadowcast/v1/executor.proto",
        "proto/shadowcast/v1/routing.proto",
        "proto/shadowcast/v1/management.proto",
    ];
    // SAFETY: a build script is single-threaded; prost-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    let descriptors =
        std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("shadowcast_descriptor.bin");
    tonic_prost_build::configure()
        .codec_path("crate::service::codec::ApiCodec")
        .file_descriptor_set_path(descriptors)
        .bytes(".")
        .compile_protos(&protos, &["proto"])?;
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
