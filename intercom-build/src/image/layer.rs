//! The image's one layer: a tree of directories and files, encoded as a reproducible tar.
//!
//! Reproducible means: entries sorted by path, every parent directory present before its
//! children, owner `0:0` with empty user and group names, mtime 0, modes given by the
//! builder (not the host's umask). The same tree gives the same bytes, hence the same
//! digest, on any machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::ImageError;

/// The mode of directories nobody asked for explicitly (parents of files).
const IMPLIED_DIR_MODE: u32 = 0o755;

#[derive(Debug, Clone)]
enum Node {
    Dir {
        mode: u32,
    },
    File {
        mode: u32,
        source: PathBuf,
        data: Vec<u8>,
    },
}

/// The layer's contents, keyed by path relative to `/` (no leading or trailing slash).
#[derive(Debug, Clone, Default)]
pub(crate) struct Tree {
    nodes: BTreeMap<String, Node>,
}

impl Tree {
    /// Adds a directory (and its parents) with `mode`; a later call for the same
    /// directory replaces the mode.
    pub(crate) fn add_dir(&mut self, dest: &str, mode: u32) -> Result<(), ImageError> {
        let path = normalize(dest)?;
        if path.is_empty() {
            return Ok(()); // `/` itself is not a tar entry
        }
        self.add_parents(&path)?;
        match self.nodes.get(&path) {
            Some(Node::File { .. }) => Err(conflict(&path, "file", "directory")),
            _ => {
                let node = Node::Dir {
                    mode: mode & 0o7777,
                };
                self.nodes.insert(path, node);
                Ok(())
            }
        }
    }

    /// Adds a file with `data` read from `source`. The same destination twice is an error
    /// unless both come from the same source (as the loader may, listed by ldd and by
    /// `PT_INTERP`).
    pub(crate) fn add_file(
        &mut self,
        dest: &str,
        source: &Path,
        data: Vec<u8>,
        mode: u32,
    ) -> Result<(), ImageError> {
        let path = normalize(dest)?;
        if path.is_empty() {
            return Err(ImageError::InvalidPath {
                path: dest.to_owned(),
                reason: "a file needs a name below `/`",
            });
        }
        self.add_parents(&path)?;
        match self.nodes.get(&path) {
            Some(Node::File { source: first, .. }) if first == source => Ok(()),
            Some(Node::File { source: first, .. }) => Err(ImageError::DuplicatePath {
                dest: format!("/{path}"),
                first: first.clone(),
                second: source.to_owned(),
            }),
            Some(Node::Dir { .. }) => Err(conflict(&path, "directory", "file")),
            None => {
                let node = Node::File {
                    mode: mode & 0o7777,
                    source: source.to_owned(),
                    data,
                };
                self.nodes.insert(path, node);
                Ok(())
            }
        }
    }

    /// Whether `dest` (absolute) is a directory in the tree.
    pub(crate) fn has_dir(&self, dest: &str) -> bool {
        normalize(dest)
            .is_ok_and(|p| p.is_empty() || matches!(self.nodes.get(&p), Some(Node::Dir { .. })))
    }

    /// Absolute paths of every file, sorted.
    pub(crate) fn files(&self) -> Vec<String> {
        let files = self
            .nodes
            .iter()
            .filter(|(_, n)| matches!(n, Node::File { .. }));
        files.map(|(p, _)| format!("/{p}")).collect()
    }

    fn add_parents(&mut self, path: &str) -> Result<(), ImageError> {
        let mut end = 0;
        while let Some(slash) = path[end..].find('/') {
            let parent = &path[..end + slash];
            match self.nodes.get(parent) {
                Some(Node::File { .. }) => return Err(conflict(parent, "file", "directory")),
                Some(Node::Dir { .. }) => {}
                None => {
                    let node = Node::Dir {
                        mode: IMPLIED_DIR_MODE,
                    };
                    self.nodes.insert(parent.to_owned(), node);
                }
            }
            end += slash + 1;
        }
        Ok(())
    }

    /// The uncompressed layer tar.
    pub(crate) fn to_tar(&self) -> Result<Vec<u8>, ImageError> {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, node) in &self.nodes {
            let (mut header, name, data): (_, _, &[u8]) = match node {
                Node::Dir { mode } => (
                    header(tar::EntryType::Directory, *mode, 0),
                    format!("{path}/"),
                    &[],
                ),
                Node::File { mode, data, .. } => (
                    header(tar::EntryType::Regular, *mode, data.len()),
                    path.clone(),
                    data,
                ),
            };
            tar.append_data(&mut header, name, data)
                .map_err(ImageError::Layer)?;
        }
        tar.into_inner().map_err(ImageError::Layer)
    }
}

/// A GNU tar header with every reproducibility-relevant field fixed.
pub(crate) fn header(kind: tar::EntryType, mode: u32, size: usize) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size as u64);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}

fn conflict(path: &str, existing: &'static str, wanted: &'static str) -> ImageError {
    ImageError::PathConflict {
        path: format!("/{path}"),
        existing,
        wanted,
    }
}

/// `/usr//lib/./x` → `usr/lib/x`; `/` → ``. Relative paths and `..` are rejected.
pub(crate) fn normalize(dest: &str) -> Result<String, ImageError> {
    let invalid = |reason| ImageError::InvalidPath {
        path: dest.to_owned(),
        reason,
    };
    if !dest.starts_with('/') {
        return Err(invalid(
            "paths in the image must be absolute, e.g. `/usr/local/bin/app`",
        ));
    }
    let mut parts = Vec::new();
    for part in dest.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(invalid("`..` is not allowed")),
            p if p.contains('\0') => return Err(invalid("NUL is not allowed")),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(tar_bytes: &[u8]) -> Vec<(String, u32)> {
        let mut archive = tar::Archive::new(tar_bytes);
        let mut out = Vec::new();
        for entry in archive.entries().expect("in-memory tar") {
            let entry = entry.expect("in-memory tar entry");
            let header = entry.header();
            let path = header.path().expect("utf-8 path").display().to_string();
            out.push((path, header.mode().expect("mode")));
            assert_eq!(header.mtime().ok(), Some(0));
            assert_eq!((header.uid().ok(), header.gid().ok()), (Some(0), Some(0)));
        }
        out
    }

    #[test]
    fn parents_come_first_and_explicit_modes_win() -> Result<(), ImageError> {
        let mut tree = Tree::default();
        tree.add_file("/usr/local/bin/app", Path::new("app"), b"x".to_vec(), 0o755)?;
        tree.add_dir("/tmp", 0o1777)?;
        tree.add_dir("/usr/local", 0o700)?;
        let got = entries(&tree.to_tar()?);
        let want = [
            ("tmp/", 0o1777),
            ("usr/", 0o755),
            ("usr/local/", 0o700),
            ("usr/local/bin/", 0o755),
            ("usr/local/bin/app", 0o755),
        ];
        let want: Vec<_> = want.iter().map(|(p, m)| (p.to_string(), *m)).collect();
        assert_eq!(got, want);
        assert_eq!(tree.files(), ["/usr/local/bin/app"]);
        Ok(())
    }

    #[test]
    fn rejects_bad_paths_and_conflicts() -> Result<(), ImageError> {
        let mut tree = Tree::default();
        assert!(matches!(
            normalize("usr/bin"),
            Err(ImageError::InvalidPath { .. })
        ));
        assert!(matches!(
            normalize("/a/../b"),
            Err(ImageError::InvalidPath { .. })
        ));
        assert_eq!(normalize("/usr//lib/./x")?, "usr/lib/x");
        tree.add_file("/a", Path::new("one"), Vec::new(), 0o644)?;
        tree.add_file("/a", Path::new("one"), Vec::new(), 0o644)?; // same source: fine
        let dup = tree.add_file("/a", Path::new("two"), Vec::new(), 0o644);
        assert!(matches!(dup, Err(ImageError::DuplicatePath { .. })));
        let under = tree.add_file("/a/b", Path::new("three"), Vec::new(), 0o644);
        assert!(matches!(under, Err(ImageError::PathConflict { .. })));
        Ok(())
    }
}
