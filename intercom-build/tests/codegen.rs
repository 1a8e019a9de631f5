//! What `intercom-build` generates and how it fails.
//!
//! The glue for `tests/proto/kv.proto` (one plugin) and `tests/proto/counter.proto` (a
//! plugin and a callback) is checked in under `tests/snapshots/`; after a deliberate change,
//! regenerate with `INSTA_UPDATE=always cargo test -p intercom-build` (or `cargo insta
//! review`) and read the diff. The examples `kv` and `bidirectional` compile and run it.

use std::path::Path;

use intercom_build::{Builder, Error};

fn proto_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/proto"))
}

/// Runs `builder` on `proto` into a fresh directory; returns that directory.
fn generate(builder: Builder, proto: &str) -> Result<tempfile::TempDir, Error> {
    let out = tempfile::tempdir().unwrap();
    builder
        .out_dir(out.path())
        .compile(&[proto], &[proto_dir()])?;
    Ok(out)
}

fn glue(out: &tempfile::TempDir) -> String {
    std::fs::read_to_string(out.path().join("proto.intercom.rs")).unwrap()
}

#[test]
fn kv_plugin_glue() {
    let out = generate(
        intercom_build::configure()
            .handshake(1, "BASIC_PLUGIN", "hello")
            .plugin("kv_grpc", "proto.KV"),
        "kv.proto",
    )
    .unwrap();
    assert!(
        out.path().join("proto.rs").is_file(),
        "tonic's code is there too"
    );
    insta::assert_snapshot!("kv", glue(&out));
}

#[test]
fn counter_plugin_and_callback_glue() {
    let out = generate(
        intercom_build::configure()
            .handshake(1, "BASIC_PLUGIN", "hello")
            .plugin("counter", "proto.Counter")
            .callback("proto.PutRequest.add_server", "proto.AddHelper"),
        "counter.proto",
    )
    .unwrap();
    insta::assert_snapshot!("counter", glue(&out));
}

#[test]
fn output_is_deterministic() {
    let builder = intercom_build::configure()
        .handshake(1, "BASIC_PLUGIN", "hello")
        .plugin("counter", "proto.Counter")
        .callback("proto.PutRequest.add_server", "proto.AddHelper");
    let first = glue(&generate(builder.clone(), "counter.proto").unwrap());
    let second = glue(&generate(builder, "counter.proto").unwrap());
    assert_eq!(first, second);
}

#[test]
fn tonic_options_pass_through_to_tonic_prost_build() {
    let stub = "Status::unimplemented(\"Not yet implemented\")";
    let tonic_code = |builder: Builder| {
        let out = generate(builder.plugin("kv_grpc", "proto.KV"), "kv.proto").unwrap();
        std::fs::read_to_string(out.path().join("proto.rs")).unwrap()
    };
    let plain = tonic_code(intercom_build::configure());
    assert!(!plain.contains(stub), "no default stubs unless asked for");
    let stubbed = tonic_code(
        intercom_build::configure()
            // intercom-build's own out_dir wins: the glue must land beside tonic's code.
            .tonic(|b| b.out_dir("/nonexistent/intercom-build-test"))
            .tonic(|b| b.generate_default_stubs(true)),
    );
    assert!(
        stubbed.contains(stub),
        "every RPC of the server trait gets a default Unimplemented body:\n{stubbed}"
    );
}

#[test]
fn without_plugins_only_tonic_code_is_written() {
    let out = generate(intercom_build::configure(), "kv.proto").unwrap();
    assert!(out.path().join("proto.rs").is_file());
    assert!(!out.path().join("proto.intercom.rs").exists());
}

#[test]
fn a_broken_proto_reports_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.proto"),
        "syntax = \"proto3\";\npackage proto;\n\nmessage Broken {\n  string key = ;\n}\n",
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let err = intercom_build::configure()
        .out_dir(out.path())
        .compile(&["broken.proto"], &[dir.path()])
        .unwrap_err();
    assert!(matches!(err, Error::Compile(_)), "{err:?}");
    let shown = err.to_string();
    assert!(
        shown.starts_with("failed to compile protos: broken.proto:5:16: "),
        "{shown}"
    );
    // Build scripts print the error with Debug: the same text.
    assert_eq!(format!("{err:?}"), shown);
}

#[test]
fn an_unresolved_type_reports_its_location() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("unresolved.proto"),
        "syntax = \"proto3\";\npackage proto;\n\nmessage M {\n  Missing m = 1;\n}\n",
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let err = intercom_build::configure()
        .out_dir(out.path())
        .compile(&["unresolved.proto"], &[dir.path()])
        .unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("unresolved.proto:5:3: "), "{shown}");
}

#[test]
fn unknown_names_are_configuration_errors() {
    let cases = [
        (
            intercom_build::configure().plugin("kv", "proto.Nope"),
            "no service `proto.Nope` in the compiled protos (services: proto.KV)",
        ),
        (
            intercom_build::configure().callback("proto.PutRequest.nope", "proto.KV"),
            "no field `proto.PutRequest.nope`",
        ),
        (
            intercom_build::configure().callback("proto.PutRequest.key", "proto.KV"),
            "must be a singular `uint32`",
        ),
        (
            intercom_build::configure()
                .build_client(false)
                .plugin("kv", "proto.KV"),
            "need both the tonic server and client",
        ),
    ];
    for (builder, expected) in cases {
        let err = generate(builder, "kv.proto").unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err:?}");
        assert!(err.to_string().contains(expected), "{err}");
    }
}

#[test]
fn clashing_callback_helpers_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("clash.proto"),
        "syntax = \"proto3\";\npackage proto;\n\
         message A { uint32 cb = 1; }\nmessage B { uint32 cb = 1; }\n\
         service S { rpc Call(A) returns (B); }\n",
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let err = intercom_build::configure()
        .out_dir(out.path())
        .callback("proto.A.cb", "proto.S")
        .callback("proto.B.cb", "proto.S")
        .compile(&["clash.proto"], &[dir.path()])
        .unwrap_err();
    assert!(
        err.to_string().contains("`serve_cb`/`dial_cb` would clash"),
        "{err}"
    );
}
