//! The one control plane of a test binary and what kind of cluster it is.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use intercom_envtest::Env;

use super::{HOST_IMAGE, MACRO_IMAGE, PLUGIN_IMAGE, SLEEPER_IMAGE, WRONG_DIGEST_IMAGE};

/// The path of this package's executable `name` (one of its `[[bin]]`s).
///
/// Only an integration test can name it at compile time (`env!("CARGO_BIN_EXE_<name>")`),
/// not this library, so it is looked up at run time: `CARGO_BIN_EXE_<name>` as Cargo sets
/// it for a running integration test (Cargo 1.94 and later), else where Cargo puts the
/// executable, the profile directory above the test executable's `deps/` (the same path).
///
/// # Panics
/// When neither exists (the test binary was not built by Cargo), or the path is not UTF-8.
fn executable(name: &str) -> String {
    let path = std::env::var_os(format!("CARGO_BIN_EXE_{name}"))
        .map(PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.parent()?.join(name))
        })
        .filter(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!("executable `{name}` not found: build and run the tests with `cargo test`")
        });
    path.into_os_string()
        .into_string()
        .unwrap_or_else(|path| panic!("the path of `{name}` is not UTF-8: {path:?}"))
}

/// The package's executables the control plane serves as images, looked up once.
struct Executables {
    test_plugin: String,
    macro_plugin: String,
    test_host: String,
}

fn executables() -> &'static Executables {
    static EXECUTABLES: OnceLock<Executables> = OnceLock::new();
    EXECUTABLES.get_or_init(|| Executables {
        test_plugin: executable("test-plugin"),
        macro_plugin: executable("macro-plugin"),
        test_host: executable("test-host"),
    })
}

/// The path of the test plugin's executable.
pub fn test_plugin_path() -> &'static str {
    &executables().test_plugin
}

/// Whether envtest runs a real node (containerd, kubelet, …: `INTERCOM_ENVTEST_NODE=real`,
/// set by `intercom-envtest/real-node-ns.sh`) rather than the process kubelet.
pub fn on_real_node() -> bool {
    !on_external_cluster()
        && matches!(
            intercom_envtest::NodeKind::from_env(),
            Ok(kind) if kind != intercom_envtest::NodeKind::Process
        )
}

/// Whether the tests run against the cluster of `INTERCOM_E2E_KUBECONFIG` (kind), not envtest.
pub fn on_external_cluster() -> bool {
    std::env::var_os("INTERCOM_E2E_KUBECONFIG").is_some()
}

/// The test plugin pinned by its real digest: on the process kubelet the executable's
/// sha256 (which it reports as the pod's imageID), on a real node the manifest digest of
/// the image envtest built and imported.
///
/// # Panics
/// When the digest cannot be had (test set-up).
pub fn pinned_image() -> String {
    use sha2::Digest;
    if on_real_node() {
        let digest = env()
            .real_node()
            .and_then(|node| node.image_digest(PLUGIN_IMAGE))
            .expect("the real node built the test plugin's image");
        return format!("intercom.test/test-plugin@{digest}");
    }
    let bytes = std::fs::read(test_plugin_path()).expect("test plugin");
    format!(
        "intercom.test/test-plugin@sha256:{}",
        hex::encode(sha2::Sha256::digest(bytes))
    )
}

/// One control plane for the whole test binary, on a runtime of its own so it outlives
/// each test's runtime. Tests build their own clients from its config.
///
/// # Panics
/// When envtest fails to start.
pub fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    ENV.get_or_init(|| {
        let rt = RUNTIME.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime")
        });
        let executables = executables();
        let mut builder = Env::builder()
            .image(PLUGIN_IMAGE, test_plugin_path())
            .image(SLEEPER_IMAGE, "/bin/sleep")
            .image(MACRO_IMAGE, executables.macro_plugin.as_str())
            .image(HOST_IMAGE, executables.test_host.as_str())
            .backoff_base(Duration::from_millis(500));
        if !on_real_node() {
            // The process kubelet maps references to executables; a real node has the
            // images it built, under their own digests.
            builder = builder
                .image(WRONG_DIGEST_IMAGE, test_plugin_path())
                .image(pinned_image(), test_plugin_path());
        }
        std::thread::scope(|s| {
            s.spawn(|| {
                rt.block_on(builder.start())
                    .unwrap_or_else(|e| panic!("envtest failed to start: {e}"))
            })
            .join()
            .expect("env thread")
        })
    })
}

/// Endpoints mode dials pod IPs from EndpointSlices, which refuse loopback addresses: it
/// needs the routed pod range `scripts/test.sh` sets up. Missing is a failure.
///
/// # Panics
/// When `INTERCOM_ENVTEST_POD_CIDR` is not set (on envtest).
pub fn require_routed_pod_range() {
    if on_external_cluster() {
        return;
    }
    assert!(
        intercom_envtest::env::pod_cidr_from_env()
            .ok()
            .flatten()
            .is_some(),
        "INTERCOM_ENVTEST_POD_CIDR is not set: run the suite through scripts/test.sh"
    );
}
