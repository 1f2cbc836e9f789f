//! Compiles `proto/` into Rust with tonic/prost. protox parses the files in pure Rust, so no
//! system `protoc` is needed to build the gateway.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(["proto/projection.proto"], ["proto"])?;
    tonic_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
