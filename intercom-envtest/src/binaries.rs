//! Locating the Kubernetes binaries: the control plane's (`etcd`, `kube-apiserver`,
//! `kube-controller-manager`: [`Binaries`]) and the real node's (`kubelet`,
//! `kube-scheduler`, `kube-proxy`, `coredns`: [`NodeBinaries`]).
//!
//! They are real upstream builds made by `intercom-envtest/build-control-plane.sh` from
//! the Go module proxy, at the versions pinned in `intercom-envtest/go/versions.env`
//! ([`KUBERNETES_VERSION`], [`ETCD_VERSION`]). The script builds into a cache directory
//! keyed by those versions; [`Binaries::find`] computes the same directory, or takes
//! [`BIN_DIR_ENV`] when it is set.

use std::ffi::OsString;
use std::path::PathBuf;

/// The pinned versions, shared with the build script.
const VERSIONS_ENV: &str = include_str!("../go/versions.env");

/// The Kubernetes release whose `kube-apiserver` and `kube-controller-manager` are used.
pub const KUBERNETES_VERSION: &str = env_value(VERSIONS_ENV, "KUBERNETES_VERSION");

/// The etcd release that is used.
pub const ETCD_VERSION: &str = env_value(VERSIONS_ENV, "ETCD_VERSION");

/// The CoreDNS release the real node's cluster DNS runs.
pub const COREDNS_VERSION: &str = env_value(VERSIONS_ENV, "COREDNS_VERSION");

/// Environment variable naming a directory that holds the three binaries; it overrides
/// the cache.
pub const BIN_DIR_ENV: &str = "INTERCOM_ENVTEST_BIN_DIR";

/// Environment variable overriding the cache root (default
/// `${XDG_CACHE_HOME:-$HOME/.cache}/intercom-envtest`), for the script and for
/// [`Binaries::find`] alike.
pub const CACHE_ENV: &str = "INTERCOM_ENVTEST_CACHE";

/// The command that builds the binaries into the cache: `build-control-plane.sh` in this
/// crate's source directory by absolute path, so it runs from any directory (in this
/// repository it is `intercom-envtest/build-control-plane.sh`; for a crates.io dependency,
/// the script in the unpacked crate under Cargo's registry).
pub const BUILD_COMMAND: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/build-control-plane.sh");

/// Where the control-plane binaries are.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The `etcd` server.
    pub etcd: PathBuf,
    /// `kube-apiserver`.
    pub kube_apiserver: PathBuf,
    /// `kube-controller-manager`.
    pub kube_controller_manager: PathBuf,
}

/// Why the binaries could not be found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BinariesError {
    /// A binary is not in the cache directory for the pinned versions.
    #[error(
        "Kubernetes binary {} is missing; build etcd {ETCD_VERSION} and Kubernetes \
         {KUBERNETES_VERSION} (a cold build takes many minutes; it needs Go) by running: \
         {command}",
        path.display()
    )]
    Missing {
        /// The binary that was looked for.
        path: PathBuf,
        /// The exact shell command that builds it.
        command: String,
    },
    /// [`BIN_DIR_ENV`] is set but a binary is not in that directory.
    #[error(
        "{BIN_DIR_ENV} is set, but {} does not exist; point it at a directory holding \
         the Kubernetes binaries, or unset it to use the \
         binaries that `{BUILD_COMMAND}` builds",
        path.display()
    )]
    MissingInBinDir {
        /// The binary that was looked for.
        path: PathBuf,
    },
    /// Neither [`BIN_DIR_ENV`], [`CACHE_ENV`], `XDG_CACHE_HOME` nor `HOME` is set.
    #[error("cannot locate the control-plane binaries: set {BIN_DIR_ENV}, {CACHE_ENV} or HOME")]
    NoCacheDir,
}

impl Binaries {
    /// `INTERCOM_ENVTEST_BIN_DIR` if set, else the cache dir for the pinned versions
    /// (same computation as the script):
    /// `${INTERCOM_ENVTEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/intercom-envtest}/k8s-<k8s>-etcd-<etcd>/bin`.
    pub fn find() -> Result<Binaries, BinariesError> {
        find_with(|name| std::env::var_os(name))
    }
}

/// Where the real node's Kubernetes binaries are: the same directory as [`Binaries`]
/// (the build script builds them together).
#[derive(Debug, Clone)]
pub struct NodeBinaries {
    /// `kubelet`.
    pub kubelet: PathBuf,
    /// `kube-scheduler`.
    pub kube_scheduler: PathBuf,
    /// `kube-proxy`.
    pub kube_proxy: PathBuf,
    /// `coredns`.
    pub coredns: PathBuf,
}

impl NodeBinaries {
    /// The same lookup as [`Binaries::find`].
    pub fn find() -> Result<NodeBinaries, BinariesError> {
        let binary = locate(|name| std::env::var_os(name))?;
        Ok(NodeBinaries {
            kubelet: binary("kubelet")?,
            kube_scheduler: binary("kube-scheduler")?,
            kube_proxy: binary("kube-proxy")?,
            coredns: binary("coredns")?,
        })
    }
}

/// [`Binaries::find`] with the environment given by `var` (empty values count as unset,
/// as `${VAR:-...}` does in the script).
fn find_with(var: impl Fn(&str) -> Option<OsString>) -> Result<Binaries, BinariesError> {
    let binary = locate(var)?;
    let binaries = Binaries {
        etcd: binary("etcd")?,
        kube_apiserver: binary("kube-apiserver")?,
        kube_controller_manager: binary("kube-controller-manager")?,
    };
    tracing::debug!(binaries = ?binaries, "found control-plane binaries");
    Ok(binaries)
}

/// The bin directory for the environment `var`, as a lookup of one binary by name.
fn locate(
    var: impl Fn(&str) -> Option<OsString>,
) -> Result<impl Fn(&str) -> Result<PathBuf, BinariesError>, BinariesError> {
    let var = |name: &str| var(name).filter(|v| !v.is_empty());
    let script = shell_quote(&OsString::from(BUILD_COMMAND));
    let (dir, command) = if let Some(dir) = var(BIN_DIR_ENV) {
        (PathBuf::from(dir), None)
    } else {
        let (root, command) = if let Some(cache) = var(CACHE_ENV) {
            let command = format!("{CACHE_ENV}={} {script}", shell_quote(&cache));
            (PathBuf::from(cache), command)
        } else if let Some(xdg) = var("XDG_CACHE_HOME") {
            let command = format!("XDG_CACHE_HOME={} {script}", shell_quote(&xdg));
            (PathBuf::from(xdg).join("intercom-envtest"), command)
        } else if let Some(home) = var("HOME") {
            let root = PathBuf::from(home).join(".cache/intercom-envtest");
            (root, script)
        } else {
            return Err(BinariesError::NoCacheDir);
        };
        let entry = format!("k8s-{KUBERNETES_VERSION}-etcd-{ETCD_VERSION}");
        (root.join(entry).join("bin"), Some(command))
    };
    Ok(move |name: &str| {
        let path = dir.join(name);
        match (path.is_file(), &command) {
            (true, _) => Ok(path),
            (false, Some(command)) => Err(BinariesError::Missing {
                path,
                command: command.clone(),
            }),
            (false, None) => Err(BinariesError::MissingInBinDir { path }),
        }
    })
}

/// Quotes `value` for a POSIX shell when it needs it.
fn shell_quote(value: &OsString) -> String {
    let value = value.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:,=@%".contains(c);
    if value.chars().all(plain) {
        value.into_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

/// The value of the `KEY=value` line for `key` in `src`, at compile time.
const fn env_value(src: &'static str, key: &str) -> &'static str {
    let (bytes, key) = (src.as_bytes(), key.as_bytes());
    let mut start = 0;
    while start < bytes.len() {
        let mut end = start;
        while end < bytes.len() && bytes[end] != b'\n' {
            end += 1;
        }
        let value_start = start + key.len() + 1;
        if value_start <= end && bytes[value_start - 1] == b'=' {
            let mut i = 0;
            while i < key.len() && bytes[start + i] == key[i] {
                i += 1;
            }
            if i == key.len() {
                let mut value_end = end;
                if value_end > value_start && bytes[value_end - 1] == b'\r' {
                    value_end -= 1;
                }
                let (value, _) = bytes.split_at(value_end);
                let (_, value) = value.split_at(value_start);
                match core::str::from_utf8(value) {
                    Ok(value) => return value,
                    Err(_) => panic!("go/versions.env is not UTF-8"),
                }
            }
        }
        start = end + 1;
    }
    panic!("a version is missing from go/versions.env")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::path::Path;

    fn env(vars: &[(&str, &Path)]) -> impl Fn(&str) -> Option<OsString> {
        let vars: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_os_str().to_owned()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    fn touch_all(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        for name in ["etcd", "kube-apiserver", "kube-controller-manager"] {
            std::fs::write(dir.join(name), "").unwrap();
        }
    }

    fn entry() -> String {
        format!("k8s-{KUBERNETES_VERSION}-etcd-{ETCD_VERSION}")
    }

    #[test]
    fn versions_come_from_versions_env() {
        assert!(
            KUBERNETES_VERSION.starts_with("v1.35."),
            "{KUBERNETES_VERSION}"
        );
        assert!(ETCD_VERSION.starts_with("v3."), "{ETCD_VERSION}");
        assert_eq!(env_value("A=1\r\nAB=2\nB=\n", "AB"), "2");
        assert_eq!(env_value("# A=0\nA=1\r\n", "A"), "1");
        assert_eq!(env_value("A=1\nB=", "B"), "");
    }

    #[test]
    fn bin_dir_env_overrides_the_cache() {
        let tmp = tempfile::tempdir().unwrap();
        touch_all(tmp.path());
        let cache = tmp.path().join("unused-cache");
        let found = find_with(env(&[(BIN_DIR_ENV, tmp.path()), (CACHE_ENV, &cache)])).unwrap();
        assert_eq!(found.etcd, tmp.path().join("etcd"));
        assert_eq!(found.kube_apiserver, tmp.path().join("kube-apiserver"));
        assert_eq!(
            found.kube_controller_manager,
            tmp.path().join("kube-controller-manager")
        );
    }

    #[test]
    fn bin_dir_env_without_binaries_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = find_with(env(&[(BIN_DIR_ENV, tmp.path())])).unwrap_err();
        assert!(
            matches!(&err, BinariesError::MissingInBinDir { path } if *path == tmp.path().join("etcd")),
            "{err:?}"
        );
        assert!(err.to_string().contains(BIN_DIR_ENV), "{err}");
    }

    #[test]
    fn cache_dir_is_found() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join(entry()).join("bin");
        touch_all(&bin);
        let found = find_with(env(&[(CACHE_ENV, tmp.path())])).unwrap();
        assert_eq!(found.kube_apiserver, bin.join("kube-apiserver"));
    }

    #[test]
    fn missing_binaries_name_the_exact_command() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("my cache");
        let err = find_with(env(&[(CACHE_ENV, &cache)])).unwrap_err();
        let BinariesError::Missing { path, command } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*path, cache.join(entry()).join("bin/etcd"));
        let quoted = format!("'{}'", cache.display());
        assert_eq!(
            *command,
            format!("INTERCOM_ENVTEST_CACHE={quoted} {BUILD_COMMAND}")
        );
        assert!(err.to_string().contains(command.as_str()), "{err}");

        // Without overrides the command is the bare script.
        let home = tmp.path().join("home");
        let err = find_with(env(&[("HOME", &home)])).unwrap_err();
        let BinariesError::Missing { path, command } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(
            *path,
            home.join(".cache/intercom-envtest")
                .join(entry())
                .join("bin/etcd")
        );
        assert_eq!(command, BUILD_COMMAND);

        let xdg = tmp.path().join("xdg");
        let err = find_with(env(&[("XDG_CACHE_HOME", &xdg), ("HOME", &home)])).unwrap_err();
        let BinariesError::Missing { path, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(
            *path,
            xdg.join("intercom-envtest").join(entry()).join("bin/etcd")
        );

        assert!(matches!(
            find_with(env(&[])),
            Err(BinariesError::NoCacheDir)
        ));
    }

    #[test]
    fn script_computes_the_same_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("build-control-plane.sh");
        let out = std::process::Command::new("bash")
            .arg(&script)
            .arg("--print-dir")
            .env(CACHE_ENV, tmp.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        let BinariesError::Missing { path, .. } =
            find_with(env(&[(CACHE_ENV, tmp.path())])).unwrap_err()
        else {
            panic!()
        };
        assert_eq!(Path::new(stdout.trim_end()), path.parent().unwrap());
    }
}
