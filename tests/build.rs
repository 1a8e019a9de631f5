use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    // kv.proto and counter.proto share the package `proto` (as in go-plugin's examples),
    // so each goes to its own directory.
    for (dir, proto, include) in [
        ("kv", "kv.proto", "../examples/kv/proto"),
        ("counter", "counter.proto", "fixtures/proto"),
        ("reverse", "reverse.proto", "fixtures/proto"),
        // The `.proto` text `#[intercom::plugin]` generates (tests/macro_proto.rs), compiled
        // as a plugin in another language would be.
        ("macro_interop", "macro_interop.proto", "fixtures/proto"),
    ] {
        let dir_name = dir;
        let dir = out.join(dir);
        std::fs::create_dir_all(&dir)?;
        let mut builder = intercom_build::configure().out_dir(dir);
        if dir_name == "kv" {
            // Generated glue too: the host side as users get it (message size limits).
            builder = builder.plugin("kv_grpc", "proto.KV");
        }
        builder.compile(&[proto], &[include])?;
    }
    Ok(())
}
