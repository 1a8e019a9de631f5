fn main() -> Result<(), Box<dyn std::error::Error>> {
    intercom_build::configure()
        .handshake(1, "BASIC_PLUGIN", "hello")
        .plugin("kv_grpc", "proto.KV")
        .compile(&["proto/kv.proto"], &["proto"])?;
    Ok(())
}
