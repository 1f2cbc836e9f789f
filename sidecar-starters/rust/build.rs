//! Generates the gRPC stubs from proto/projection.proto at build time (protox parses the proto
//! in Rust, so no protoc is needed); src/main.rs includes them.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(["projection.proto"], ["proto"])?;
    tonic_build::configure()
        .build_client(false)
        .compile_fds(descriptors)?;
    Ok(())
}
