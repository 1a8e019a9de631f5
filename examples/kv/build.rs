fn main() -> Result<(), Box<dyn std::error::Error>> {
    intercom_build::compile_protos(&["kv.proto"], &["proto"])?;
    Ok(())
}
