fn main() -> Result<(), Box<dyn std::error::Error>> {
    intercom_build::configure().compile(
        &[
            "grpc_broker.proto",
            "grpc_controller.proto",
            "grpc_stdio.proto",
        ],
        &["proto"],
    )?;
    Ok(())
}
