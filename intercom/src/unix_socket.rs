//! Who may reach a unix socket: private directories and sockets by default, a group
//! on request (go-plugin's `UnixSocketConfig.Group` / `PLUGIN_UNIX_SOCKET_GROUP`).
//!
//! Without a group a socket directory is `0700` and a socket `0600`, so only the user
//! running the plugin (and root) can connect. With a group, the group becomes the owning
//! group and gets access: `0770` for a host's socket directory and `0660` for a socket,
//! as in go-plugin, and `0710` for the directory a plugin makes for its own socket.

use std::fmt;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// A socket directory only its owner can enter.
pub(crate) const PRIVATE_DIR: u32 = 0o700;
/// A socket only its owner can connect to.
pub(crate) const PRIVATE_SOCKET: u32 = 0o600;
/// A host's socket directory shared with a group (go-plugin: `0o770`).
pub(crate) const GROUP_HOST_DIR: u32 = 0o770;
/// A plugin's own socket directory shared with a group: the group may pass through to
/// the socket but not list or write.
pub(crate) const GROUP_PLUGIN_DIR: u32 = 0o710;
/// A socket a group may connect to (go-plugin: `0o660`).
pub(crate) const GROUP_SOCKET: u32 = 0o660;

/// The group given access to unix sockets: a name or a numeric gid, as go-plugin takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketGroup(String);

impl SocketGroup {
    /// A group by name (`"plugins"`) or gid (`"1001"`).
    pub fn new(group: impl Into<String>) -> Self {
        Self(group.into())
    }

    /// The group as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The numeric gid: the value itself when it is a number, else the group database's.
    ///
    /// # Errors
    /// [`SocketGroupError::Unknown`] when no such group exists, or the lookup failed.
    pub fn gid(&self) -> Result<nix::unistd::Gid, SocketGroupError> {
        if let Ok(gid) = self.0.parse::<u32>() {
            return Ok(nix::unistd::Gid::from_raw(gid));
        }
        match nix::unistd::Group::from_name(&self.0) {
            Ok(Some(group)) => Ok(group.gid),
            Ok(None) => Err(SocketGroupError::Unknown {
                group: self.0.clone(),
                source: None,
            }),
            Err(e) => Err(SocketGroupError::Unknown {
                group: self.0.clone(),
                source: Some(io::Error::from(e)),
            }),
        }
    }
}

impl fmt::Display for SocketGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A socket group that cannot be applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SocketGroupError {
    /// Neither a gid nor a known group name.
    #[error(
        "unix socket group {group:?} is neither a numeric gid nor a group known to this machine"
    )]
    Unknown {
        /// The group as given.
        group: String,
        /// The lookup failure, when there was one.
        #[source]
        source: Option<io::Error>,
    },
    /// chown or chmod failed.
    #[error(
        "failed to give group {group:?} access to {path}: the process must be a member of the group (or root)"
    )]
    Apply {
        /// The group as given.
        group: String,
        /// The file or directory.
        path: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Sets `path` to `private` mode, or with a group to that group and `shared` mode.
pub(crate) fn restrict(
    path: &Path,
    group: Option<&SocketGroup>,
    private: u32,
    shared: u32,
) -> Result<(), SocketGroupError> {
    let apply_err = |group: &str, source: io::Error| SocketGroupError::Apply {
        group: group.to_owned(),
        path: path.display().to_string(),
        source,
    };
    let mode = match group {
        None => private,
        Some(group) => {
            let gid = group.gid()?;
            nix::unistd::chown(path, None, Some(gid))
                .map_err(|e| apply_err(group.as_str(), io::Error::from(e)))?;
            shared
        }
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|source| apply_err(group.map_or("", SocketGroup::as_str), source))
}

/// A fresh directory named `prefix…` in `base`, created `0700` (no moment where others
/// could enter it), then opened to `group` with mode `shared` when one is given.
pub(crate) fn private_dir(
    base: &Path,
    prefix: &str,
    group: Option<&SocketGroup>,
    shared: u32,
) -> Result<tempfile::TempDir, SocketDirError> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .permissions(std::fs::Permissions::from_mode(PRIVATE_DIR))
        .tempdir_in(base)
        .map_err(|source| SocketDirError::Create {
            base: base.display().to_string(),
            source,
        })?;
    if group.is_some() {
        restrict(dir.path(), group, PRIVATE_DIR, shared)?;
    }
    Ok(dir)
}

/// A socket directory that cannot be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SocketDirError {
    /// The directory could not be created.
    #[error("failed to create a socket directory in {base}")]
    Create {
        /// Where it was to be created.
        base: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The group could not be applied.
    #[error(transparent)]
    Group(#[from] SocketGroupError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_private_dir_is_0700() {
        let base = tempfile::tempdir().unwrap();
        let dir = private_dir(base.path(), "plugin", None, GROUP_HOST_DIR).unwrap();
        assert_eq!(mode(dir.path()), PRIVATE_DIR);
    }

    #[test]
    fn a_group_owns_the_dir_and_gets_its_mode() {
        let base = tempfile::tempdir().unwrap();
        // Our own primary group: a group we can always chown to.
        let gid = nix::unistd::getegid();
        let group = SocketGroup::new(gid.as_raw().to_string());
        let dir = private_dir(base.path(), "plugin", Some(&group), GROUP_HOST_DIR).unwrap();
        assert_eq!(mode(dir.path()), GROUP_HOST_DIR);
        let meta = std::fs::metadata(dir.path()).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), gid.as_raw());
    }

    #[test]
    fn an_unknown_group_name_is_a_typed_error() {
        let group = SocketGroup::new("no-such-group-intercom-test");
        assert!(matches!(
            group.gid(),
            Err(SocketGroupError::Unknown { source: None, .. })
        ));
        let base = tempfile::tempdir().unwrap();
        let err = private_dir(base.path(), "plugin", Some(&group), GROUP_HOST_DIR).unwrap_err();
        assert!(
            err.to_string().contains("no-such-group-intercom-test"),
            "{err}"
        );
    }

    #[test]
    fn group_names_resolve_through_the_group_database() {
        // Every Linux machine has a group named root with gid 0.
        assert_eq!(SocketGroup::new("root").gid().unwrap().as_raw(), 0);
        assert_eq!(SocketGroup::new("4242").gid().unwrap().as_raw(), 4242);
    }
}
