//! Compiles the protobuf contracts with tonic/prost. protox parses the files in pure Rust, so
//! no system `protoc` is needed:
//! - `proto/`: our sidecar contract (client and server; the example sidecar serves it);
//! - `tests/it/support/kurrentdb/protos/`: KurrentDB's official client protos, copied from the
//!   `kurrentdb` crate's sources, for the in-repo test server (server side only). Tests and the
//!   benchmark `include!` them from `OUT_DIR`; the library itself does not use them.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(["proto/projection.proto"], ["proto"])?;
    tonic_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;

    let kurrentdb = "tests/it/support/kurrentdb/protos";
    println!("cargo:rerun-if-changed={kurrentdb}");
    let files = ["streams.proto", "serverfeatures.proto", "gossip.proto"].map(|f| format!("{kurrentdb}/{f}"));
    let descriptors = protox::compile(files, [kurrentdb])?;
    tonic_build::configure()
        .build_client(false)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
