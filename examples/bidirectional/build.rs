fn main() -> Result<(), Box<dyn std::error::Error>> {
    intercom_build::configure()
        .handshake(1, "BASIC_PLUGIN", "hello")
        .plugin("counter", "proto.Counter")
        .callback("proto.PutRequest.add_server", "proto.AddHelper")
        .compile(&["proto/counter.proto"], &["proto"])?;
    Ok(())
}
