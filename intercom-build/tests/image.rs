//! `intercom_build::image` end to end without a container runtime: the archive parses back
//! with consistent digests and media types, builds are reproducible, and dynamic binaries
//! get their loader and libraries. (`image_containerd.rs` imports and runs an image.)

use std::collections::BTreeMap;
use std::io::Read;

use intercom_build::image::{
    Digest, ImageBuilder, ImageError, Libraries, MEDIA_TYPE_CONFIG, MEDIA_TYPE_INDEX,
    MEDIA_TYPE_LAYER, MEDIA_TYPE_MANIFEST, Platform,
};
use serde_json::{Value, json};

mod support;
use support::fake_static_elf;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const REF: &str = "example.com/intercom/true:1";

/// One tar entry, read back.
struct Entry {
    path: String,
    kind: tar::EntryType,
    mode: u32,
    data: Vec<u8>,
}

/// Every entry of a tar, in archive order, checking owner and mtime on the way.
fn read_tar(bytes: &[u8]) -> Result<Vec<Entry>, std::io::Error> {
    let mut out = Vec::new();
    for entry in tar::Archive::new(bytes).entries()? {
        let mut entry = entry?;
        let header = entry.header();
        assert_eq!(header.mtime()?, 0, "mtime of {:?}", header.path()?);
        assert_eq!(
            (header.uid()?, header.gid()?),
            (0, 0),
            "owner of {:?}",
            header.path()?
        );
        let (kind, mode) = (header.entry_type(), header.mode()?);
        let path = entry.path()?.to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        out.push(Entry {
            path,
            kind,
            mode,
            data,
        });
    }
    Ok(out)
}

/// The regular files of a tar, by path.
fn files(entries: &[Entry]) -> BTreeMap<String, Vec<u8>> {
    let regular = entries.iter().filter(|e| e.kind == tar::EntryType::Regular);
    regular.map(|e| (e.path.clone(), e.data.clone())).collect()
}

fn blob<'a>(files: &'a BTreeMap<String, Vec<u8>>, digest: &str) -> Result<&'a [u8], String> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or(format!("not a sha256 digest: {digest}"))?;
    let data = files
        .get(&format!("blobs/sha256/{hex}"))
        .ok_or(format!("no blob {digest}"))?;
    assert_eq!(
        Digest::sha256(data).as_str(),
        digest,
        "blob content matches its name"
    );
    Ok(data)
}

/// Checks a descriptor's media type and size against the blob it names; returns the blob.
fn resolve<'a>(
    files: &'a BTreeMap<String, Vec<u8>>,
    desc: &Value,
    media_type: &str,
) -> Result<&'a [u8], String> {
    assert_eq!(desc["mediaType"], media_type);
    let data = blob(
        files,
        desc["digest"].as_str().ok_or("descriptor without digest")?,
    )?;
    assert_eq!(desc["size"], json!(data.len()));
    Ok(data)
}

fn sample() -> ImageBuilder {
    ImageBuilder::new(REF)
        .entrypoint_binary("/bin/true")
        .dir("/tmp", 0o1777)
        .user("65532:65532")
        .workdir("/work")
        .env("RUST_LOG", "debug")
        .label("org.opencontainers.image.title", "true")
        .args(["--version"])
}

#[test]
fn archive_parses_back_with_matching_digests() -> TestResult {
    let dir = tempfile::tempdir()?;
    let image = sample().build()?;
    let path = dir.path().join("image.tar");
    image.write_oci_archive(&path)?;
    let files = files(&read_tar(&std::fs::read(&path)?)?);
    assert_eq!(files["oci-layout"], br#"{"imageLayoutVersion":"1.0.0"}"#);

    let index: Value = serde_json::from_slice(&files["index.json"])?;
    assert_eq!(
        (index["schemaVersion"].clone(), index["mediaType"].clone()),
        (json!(2), json!(MEDIA_TYPE_INDEX))
    );
    let [desc] = index["manifests"]
        .as_array()
        .ok_or("no manifests")?
        .as_slice()
    else {
        return Err("expected exactly one manifest".into());
    };
    assert_eq!(desc["digest"], image.manifest_digest().as_str());
    assert_eq!(desc["annotations"]["io.containerd.image.name"], REF);
    assert_eq!(
        desc["annotations"]["org.opencontainers.image.ref.name"],
        REF
    );
    assert_eq!(
        desc["platform"],
        json!({"os": "linux", "architecture": Platform::host().architecture})
    );
    let manifest: Value = serde_json::from_slice(resolve(&files, desc, MEDIA_TYPE_MANIFEST)?)?;
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], MEDIA_TYPE_MANIFEST);

    let config_bytes = resolve(&files, &manifest["config"], MEDIA_TYPE_CONFIG)?;
    assert_eq!(Digest::sha256(config_bytes), *image.config_digest());
    let [layer_desc] = manifest["layers"].as_array().ok_or("no layers")?.as_slice() else {
        return Err("expected exactly one layer".into());
    };
    let layer = resolve(&files, layer_desc, MEDIA_TYPE_LAYER)?;
    assert_eq!(Digest::sha256(layer), *image.layer_digest());

    let config: Value = serde_json::from_slice(config_bytes)?;
    assert_eq!(
        config["rootfs"],
        json!({"type": "layers", "diff_ids": [image.layer_digest().as_str()]})
    );
    assert_eq!(config["os"], "linux");
    let run = &config["config"];
    assert_eq!(run["Entrypoint"], json!(["/usr/local/bin/true"]));
    assert_eq!(run["Cmd"], json!(["--version"]));
    assert_eq!(run["User"], "65532:65532");
    assert_eq!(run["WorkingDir"], "/work");
    assert_eq!(
        run["Labels"],
        json!({"org.opencontainers.image.title": "true"})
    );
    let env = run["Env"].as_array().ok_or("no Env")?;
    assert!(
        env.iter()
            .any(|e| e.as_str().is_some_and(|e| e.starts_with("PATH=/"))),
        "{env:?}"
    );
    assert!(env.contains(&json!("RUST_LOG=debug")), "{env:?}");

    let docker: Value = serde_json::from_slice(&files["manifest.json"])?;
    let config_path = format!("blobs/sha256/{}", image.config_digest().hex());
    let layer_path = format!("blobs/sha256/{}", image.layer_digest().hex());
    assert_eq!(
        docker,
        json!([{"Config": config_path, "RepoTags": [REF], "Layers": [layer_path]}])
    );
    check_layer(layer)
}

/// Sorted entries, each parent directory before its children, explicit modes kept.
fn check_layer(layer: &[u8]) -> TestResult {
    let entries = read_tar(layer)?;
    let paths: Vec<&str> = entries
        .iter()
        .map(|e| e.path.trim_end_matches('/'))
        .collect();
    let mut sorted = paths.clone();
    sorted.sort_unstable();
    assert_eq!(paths, sorted, "layer entries are sorted");
    for (i, path) in paths.iter().enumerate() {
        if let Some((parent, _)) = path.rsplit_once('/') {
            let pos = paths.iter().position(|p| *p == parent);
            assert!(pos.is_some_and(|p| p < i), "parent of {path} comes first");
            assert_eq!(
                entries[pos.unwrap_or_default()].kind,
                tar::EntryType::Directory
            );
        }
    }
    let mode = |path: &str| entries.iter().find(|e| e.path == path).map(|e| e.mode);
    assert_eq!(mode("tmp/"), Some(0o1777));
    assert_eq!(mode("work/"), Some(0o755));
    assert_eq!(mode("usr/local/bin/true"), Some(0o755));
    Ok(())
}

#[test]
fn same_inputs_give_the_same_digests() -> TestResult {
    let (a, b) = (sample().build()?, sample().build()?);
    assert_eq!(a.manifest_digest(), b.manifest_digest());
    assert_eq!(a.config_digest(), b.config_digest());
    let (a_tar, b_tar) = (
        a.write_oci_archive_to(Vec::new())?,
        b.write_oci_archive_to(Vec::new())?,
    );
    assert!(a_tar == b_tar, "archives are byte-identical");
    // The file is read at build time: a copy of the binary elsewhere, same content, same image.
    let dir = tempfile::tempdir()?;
    let copy = dir.path().join("true");
    std::fs::copy("/bin/true", &copy)?;
    let c = sample().entrypoint_binary(&copy).build()?;
    assert_eq!(a.manifest_digest(), c.manifest_digest());
    let d = sample().env("RUST_LOG", "info").build()?;
    assert_ne!(
        a.manifest_digest(),
        d.manifest_digest(),
        "a different config, a different digest"
    );
    Ok(())
}

/// The loader (the binary's PT_INTERP, found as ldd's absolute line) and libc, as regular
/// files holding the host files' (symlinks resolved) content.
#[test]
fn dynamic_binary_gets_its_loader_and_libraries() -> TestResult {
    let image = ImageBuilder::new(REF)
        .entrypoint_binary("/bin/true")
        .build()?;
    let names = image.files();
    let loader = names
        .iter()
        .find(|p| file_name(p).starts_with("ld-"))
        .ok_or(format!("no loader in {names:?}"))?;
    let libc = names
        .iter()
        .find(|p| file_name(p).starts_with("libc."))
        .ok_or(format!("no libc in {names:?}"))?;
    let layer = read_tar(&layer_bytes(&image)?)?;
    for path in [loader, libc] {
        let entry = layer
            .iter()
            .find(|e| format!("/{}", e.path) == *path)
            .ok_or(format!("{path} not in layer"))?;
        assert_eq!(
            entry.kind,
            tar::EntryType::Regular,
            "{path} is a regular file"
        );
        let host = std::fs::read(std::fs::canonicalize(path)?)?;
        assert!(entry.data == host, "{path} holds the host file's content");
    }
    let ldd = std::process::Command::new("ldd")
        .arg("/bin/true")
        .output()?;
    let ldd = String::from_utf8(ldd.stdout)?;
    assert!(
        ldd.contains(loader.as_str()),
        "the loader path is the one ldd prints: {ldd}"
    );
    Ok(())
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn layer_bytes(
    image: &intercom_build::image::Image,
) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let archive = image.write_oci_archive_to(Vec::new())?;
    let files = files(&read_tar(&archive)?);
    Ok(blob(&files, image.layer_digest().as_str())?.to_vec())
}

#[test]
fn static_binaries_get_no_libraries_and_mismatches_are_errors() -> TestResult {
    let dir = tempfile::tempdir()?;
    let amd64 = fake_static_elf(dir.path(), 62)?;
    for libraries in [Libraries::FromLdd, Libraries::Static] {
        let image = ImageBuilder::new(REF)
            .entrypoint_binary(&amd64)
            .binary_dest("/app")
            .libraries(libraries)
            .platform(Platform::new("linux", "amd64"))
            .build()?;
        assert_eq!(image.files(), ["/app"], "{libraries:?}");
    }
    let arm64 = fake_static_elf(dir.path(), 183)?;
    let err = ImageBuilder::new(REF)
        .entrypoint_binary(&arm64)
        .platform(Platform::new("linux", "amd64"))
        .build();
    assert!(
        matches!(
            err,
            Err(ImageError::ArchMismatch {
                binary: "arm64",
                ..
            })
        ),
        "{err:?}"
    );
    let image = ImageBuilder::new(REF)
        .entrypoint_binary(&arm64)
        .platform("linux/arm64".parse()?)
        .build()?;
    assert_eq!(image.platform().architecture, "arm64");

    let err = ImageBuilder::new(REF)
        .entrypoint_binary("/bin/true")
        .libraries(Libraries::Static)
        .build();
    assert!(matches!(err, Err(ImageError::NotStatic { .. })), "{err:?}");
    let script = dir.path().join("script.sh");
    std::fs::write(&script, "#!/bin/sh\n")?;
    let err = ImageBuilder::new(REF).entrypoint_binary(&script).build();
    assert!(matches!(err, Err(ImageError::NotElf { .. })), "{err:?}");
    let err = ImageBuilder::new("no-tag")
        .entrypoint_binary("/bin/true")
        .build();
    assert!(
        matches!(err, Err(ImageError::InvalidReference { .. })),
        "{err:?}"
    );
    let err = ImageBuilder::new(REF).build();
    assert!(matches!(err, Err(ImageError::NoEntrypoint)), "{err:?}");
    Ok(())
}

#[test]
fn extra_files_and_their_conflicts() -> TestResult {
    let dir = tempfile::tempdir()?;
    let conf = dir.path().join("app.toml");
    std::fs::write(&conf, "x = 1\n")?;
    let image = sample().file(&conf, "/etc/app/app.toml").build()?;
    assert!(image.files().contains(&"/etc/app/app.toml".to_owned()));
    let layer = read_tar(&layer_bytes(&image)?)?;
    let entry = layer
        .iter()
        .find(|e| e.path == "etc/app/app.toml")
        .ok_or("no app.toml")?;
    assert_eq!(
        (entry.mode, entry.data.as_slice()),
        (0o644, b"x = 1\n".as_slice())
    );

    let err = sample().file(&conf, "relative/path").build();
    assert!(
        matches!(err, Err(ImageError::InvalidPath { .. })),
        "{err:?}"
    );
    let err = sample().file(&conf, "/usr/local/bin/true").build();
    assert!(
        matches!(err, Err(ImageError::DuplicatePath { .. })),
        "{err:?}"
    );
    let err = sample().file(&conf, "/tmp").build();
    assert!(
        matches!(err, Err(ImageError::PathConflict { .. })),
        "{err:?}"
    );
    let err = sample().file(dir.path(), "/etc/dir").build();
    assert!(matches!(err, Err(ImageError::NotAFile { .. })), "{err:?}");
    let err = sample().env("A=B", "c").build();
    assert!(matches!(err, Err(ImageError::InvalidEnv { .. })), "{err:?}");
    Ok(())
}

/// The binary's options map to the same builder calls: same digest as the library's.
#[test]
fn cli_prints_the_manifest_digest_the_library_computes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("cli.tar");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_intercom-image"))
        .arg("/bin/true")
        .args(["--tag", REF, "-o"])
        .arg(&out)
        .args([
            "--dir",
            "/tmp:1777",
            "--user",
            "65532:65532",
            "--workdir=/work",
        ])
        .args([
            "--env",
            "RUST_LOG=debug",
            "--label",
            "org.opencontainers.image.title=true",
        ])
        .args(["--lib-from-ldd", "--", "--version"])
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "intercom-image failed: {stderr}");
    let image = sample().build()?;
    assert_eq!(
        String::from_utf8(output.stdout)?.trim(),
        image.manifest_digest().as_str()
    );
    assert!(
        std::fs::read(&out)? == image.write_oci_archive_to(Vec::new())?,
        "same archive bytes"
    );

    let usage = std::process::Command::new(env!("CARGO_BIN_EXE_intercom-image"))
        .args(["/bin/true", "--tag", REF])
        .output()?;
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("missing -o <archive.tar>"));
    Ok(())
}
