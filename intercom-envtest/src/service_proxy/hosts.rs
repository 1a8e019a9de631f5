//! The proxy's cluster DNS: a block of `/etc/hosts`-format lines in a shared file.
//!
//! Several proxies (one per [`Env`](crate::Env), possibly in several test binaries) share
//! one file, usually a private copy bind-mounted over `/etc/hosts` inside the test network
//! namespace. Each owns a block between marker lines and rewrites only that block, in place
//! (a bind-mounted file cannot be replaced by a rename) and under an exclusive file lock.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

const BEGIN: &str = "# BEGIN intercom-envtest ";
const END: &str = "# END intercom-envtest ";

/// Whether the process of a block's owner (`<pid>-<n>`) still runs.
fn owner_alive(owner: &str) -> bool {
    match owner.split('-').next().and_then(|p| p.parse::<u32>().ok()) {
        Some(pid) => Path::new(&format!("/proc/{pid}")).exists(),
        None => true,
    }
}

/// One proxy's block in a hosts file.
#[derive(Debug)]
pub(crate) struct HostsBlock {
    path: PathBuf,
    begin: String,
    end: String,
}

impl HostsBlock {
    pub(crate) fn new(path: &Path, owner: &str) -> Self {
        Self {
            path: path.to_owned(),
            begin: format!("{BEGIN}{owner}"),
            end: format!("{END}{owner}"),
        }
    }

    /// Replaces this block's lines with `lines` (none: removes the block).
    pub(crate) fn write(&self, lines: &[String]) -> io::Result<()> {
        let mut file = OpenOptions::new().read(true).write(true).open(&self.path)?;
        file.lock()?;
        let result = self.rewrite(&mut file, lines);
        let _ = file.unlock();
        result
    }

    fn rewrite(&self, file: &mut File, lines: &[String]) -> io::Result<()> {
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        let mut out = self.without_block(&text);
        if !lines.is_empty() {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&self.begin);
            out.push('\n');
            for line in lines {
                out.push_str(line);
                out.push('\n');
            }
            out.push_str(&self.end);
            out.push('\n');
        }
        if out == text {
            return Ok(());
        }
        file.seek(SeekFrom::Start(0))?;
        file.set_len(0)?;
        file.write_all(out.as_bytes())?;
        file.flush()
    }

    /// `text` without this block, nor the blocks of processes that are gone (a test binary
    /// whose `Env` was never dropped); other blocks and foreign lines stay.
    fn without_block(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut skipping: Option<String> = None;
        for line in text.lines() {
            if let Some(end) = &skipping {
                if line == end {
                    skipping = None;
                }
                continue;
            }
            if let Some(owner) = line.strip_prefix(BEGIN)
                && (line == self.begin || !owner_alive(owner))
            {
                skipping = Some(format!("{END}{owner}"));
                continue;
            }
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_replaced_and_removed_without_touching_other_lines() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("hosts");
        std::fs::write(&path, "127.0.0.1 localhost\n").expect("write");
        let me = std::process::id();
        let a = HostsBlock::new(&path, &format!("{me}-1"));
        let b = HostsBlock::new(&path, &format!("{me}-2"));
        a.write(&["10.0.0.5 x.ns.svc".into()]).expect("a");
        b.write(&["10.0.1.5 y.ns.svc".into()]).expect("b");
        a.write(&["10.0.0.6 z.ns.svc".into()]).expect("a again");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            text,
            format!(
                "127.0.0.1 localhost\n\
                 # BEGIN intercom-envtest {me}-2\n10.0.1.5 y.ns.svc\n# END intercom-envtest {me}-2\n\
                 # BEGIN intercom-envtest {me}-1\n10.0.0.6 z.ns.svc\n# END intercom-envtest {me}-1\n"
            )
        );
        // A block left by a process that is gone is dropped at the next write.
        let mut text = std::fs::read_to_string(&path).expect("read");
        text.push_str("# BEGIN intercom-envtest 4294967295-0\n10.9.9.9 old.ns.svc\n# END intercom-envtest 4294967295-0\n");
        std::fs::write(&path, text).expect("write");
        a.write(&["10.0.0.6 z.ns.svc".into()]).expect("a once more");
        assert!(
            !std::fs::read_to_string(&path)
                .expect("read")
                .contains("old.ns.svc")
        );
        a.write(&[]).expect("remove a");
        b.write(&[]).expect("remove b");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "127.0.0.1 localhost\n"
        );
    }
}
