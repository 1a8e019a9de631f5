fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Plain tonic code for the raw streaming twin; the `plugin` entry is unused by it.
    intercom_build::configure()
        .handshake(1, "BENCH_RAW_STREAM", "bench")
        .plugin("chunks_raw", "bench.Chunks")
        .compile(&["proto/chunks.proto"], &["proto"])?;
    Ok(())
}
