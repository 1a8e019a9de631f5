//! The shared libraries of a dynamic executable, as `ldd` lists them.
//!
//! `ldd` is glibc's (or musl's) own answer to "what would the loader map": it follows
//! `DT_NEEDED` transitively, `DT_RUNPATH`/`DT_RPATH`, `LD_LIBRARY_PATH` and
//! `/etc/ld.so.cache`, which a hand-written ELF walker would have to reimplement. The
//! price: glibc's `ldd` runs the binary's loader, so only point it at binaries you trust
//! (your own build output), as `ldd(1)` itself warns.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::ImageError;

/// What `ldd` printed for one binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Linkage {
    /// `statically linked` / `not a dynamic executable`.
    Static,
    /// Every absolute path the loader maps, the loader itself included, in `ldd`'s order.
    Dynamic(Vec<PathBuf>),
}

/// Why one line of `ldd` output was not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LineProblem {
    /// `libfoo.so => not found`: the library name.
    NotFound(String),
    /// Anything else: the line.
    Unexpected(String),
}

/// Runs `ldd binary` and parses its output.
pub(crate) fn libraries(binary: &Path) -> Result<Linkage, ImageError> {
    let output = Command::new("ldd")
        .arg(binary)
        .env("LC_ALL", "C")
        .output()
        .map_err(|source| ImageError::LddSpawn {
            path: binary.to_owned(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if is_not_dynamic(&stdout) || is_not_dynamic(&stderr) {
        return Ok(Linkage::Static);
    }
    if !output.status.success() {
        return Err(ImageError::LddFailed {
            path: binary.to_owned(),
            status: output.status,
            stderr: stderr.trim().chars().take(2000).collect(),
        });
    }
    parse(&stdout).map_err(|problem| match problem {
        LineProblem::NotFound(library) => ImageError::LibraryNotFound {
            path: binary.to_owned(),
            library,
        },
        LineProblem::Unexpected(line) => ImageError::LddOutput {
            path: binary.to_owned(),
            line: line.chars().take(200).collect(),
        },
    })
}

/// glibc prints `not a dynamic executable` (stderr, exit 1) for static and foreign
/// binaries and `statically linked` (stdout, exit 0) for static-pie ones.
fn is_not_dynamic(text: &str) -> bool {
    text.contains("not a dynamic executable") || text.trim() == "statically linked"
}

/// Parses `ldd` stdout. Accepted lines (leading whitespace ignored):
///
/// - `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)`: a library;
/// - `/lib64/ld-linux-x86-64.so.2 (0x…)`: the loader, by its `PT_INTERP` path;
/// - `linux-vdso.so.1 (0x…)`, `linux-gate.so.1 => (0x…)`: kernel-provided, skipped;
/// - `libfoo.so => not found`: an error.
pub(crate) fn parse(stdout: &str) -> Result<Linkage, LineProblem> {
    let mut paths: Vec<PathBuf> = Vec::new();
    for raw in stdout.lines() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if is_not_dynamic(line) {
            return Ok(Linkage::Static);
        }
        let (name, target) = match line.split_once("=>") {
            Some((name, rest)) => (name.trim(), rest.trim()),
            None => ("", line),
        };
        if target == "not found" {
            return Err(LineProblem::NotFound(name.to_owned()));
        }
        // Strip the ` (0x…)` load address.
        let (path, has_address) = match target.rsplit_once("(0x") {
            Some((path, _)) => (path.trim(), true),
            None => (target, false),
        };
        if !path.starts_with('/') {
            // `linux-gate.so.1 => (0x…)` or `linux-vdso.so.1 (0x…)`: no file to copy.
            if has_address && (path.is_empty() || name.is_empty()) {
                continue;
            }
            return Err(LineProblem::Unexpected(line.to_owned()));
        }
        let path = PathBuf::from(path);
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    Ok(Linkage::Dynamic(paths))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GLIBC: &str = "\tlinux-vdso.so.1 (0x00007ffd1b5f2000)
\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f0c1a2e0000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0c1a0ff000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f0c1a33f000)
";

    #[test]
    fn parses_glibc_output_skipping_the_vdso() {
        let want = [
            "/lib/x86_64-linux-gnu/libgcc_s.so.1",
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/lib64/ld-linux-x86-64.so.2",
        ];
        let want = want.iter().map(PathBuf::from).collect();
        assert_eq!(parse(GLIBC), Ok(Linkage::Dynamic(want)));
    }

    #[test]
    fn parses_musl_and_old_vdso_forms() {
        let musl = "\t/lib/ld-musl-x86_64.so.1 (0x7f5f1c1e2000)
\tlibc.musl-x86_64.so.1 => /lib/ld-musl-x86_64.so.1 (0x7f5f1c1e2000)
\tlinux-gate.so.1 =>  (0xf7f1e000)
";
        let want = vec![PathBuf::from("/lib/ld-musl-x86_64.so.1")];
        assert_eq!(parse(musl), Ok(Linkage::Dynamic(want)));
    }

    #[test]
    fn reports_missing_libraries_and_static_binaries() {
        let missing = "\tlibfoo.so.1 => not found\n";
        assert_eq!(
            parse(missing),
            Err(LineProblem::NotFound("libfoo.so.1".into()))
        );
        assert_eq!(parse("\tstatically linked\n"), Ok(Linkage::Static));
        let odd = "something odd\n";
        assert_eq!(
            parse(odd),
            Err(LineProblem::Unexpected("something odd".into()))
        );
    }
}
