//! Generates the protobuf messages and the tonic client and server for
//! `proto/greeter.proto` into `OUT_DIR` (`src/greeter.rs` includes them). intercom-build
//! uses a pure-Rust protobuf compiler, so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    intercom_build::compile_protos(&["greeter.proto"], &["proto"])?;
    Ok(())
}
