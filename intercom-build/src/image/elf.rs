//! The two facts read from an ELF header: the machine (for the image platform) and the
//! `PT_INTERP` program header (the dynamic loader; none means a static binary).

/// What [`inspect`] learned about an executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ElfInfo {
    /// The OCI architecture name of `e_machine` (`amd64`, `arm64`, …), when known.
    pub(crate) architecture: Option<&'static str>,
    /// The `PT_INTERP` path, e.g. `/lib64/ld-linux-x86-64.so.2`; `None` for a static binary.
    pub(crate) interpreter: Option<String>,
}

/// Why bytes are not a usable ELF executable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ElfProblem {
    /// No `\x7fELF` magic.
    NotElf,
    /// The header or a program header points outside the file.
    Malformed(&'static str),
}

const PT_INTERP: u32 = 3;

/// Reads the ELF header and program headers of `data`, bounds-checked throughout.
pub(crate) fn inspect(data: &[u8]) -> Result<ElfInfo, ElfProblem> {
    if data.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err(ElfProblem::NotElf);
    }
    let is64 = match data.get(4) {
        Some(1) => false,
        Some(2) => true,
        _ => return Err(ElfProblem::Malformed("unknown ELF class")),
    };
    let little = match data.get(5) {
        Some(1) => true,
        Some(2) => false,
        _ => return Err(ElfProblem::Malformed("unknown ELF byte order")),
    };
    let r = Reader { data, little };
    let machine = r.u16(18)?;
    let (phoff, phentsize, phnum) = if is64 {
        (r.u64(32)?, r.u16(54)?, r.u16(56)?)
    } else {
        (u64::from(r.u32(28)?), r.u16(42)?, r.u16(44)?)
    };
    let mut interpreter = None;
    for i in 0..u64::from(phnum) {
        let at = phoff
            .checked_add(i * u64::from(phentsize))
            .ok_or(ElfProblem::Malformed("program header offset overflows"))?;
        let at = to_usize(at)?;
        if r.u32(at)? != PT_INTERP {
            continue;
        }
        let (offset, size) = if is64 {
            (r.u64(at.saturating_add(8))?, r.u64(at.saturating_add(32))?)
        } else {
            let offset = r.u32(at.saturating_add(4))?;
            (u64::from(offset), u64::from(r.u32(at.saturating_add(16))?))
        };
        let start = to_usize(offset)?;
        let end = start
            .checked_add(to_usize(size)?)
            .ok_or(ElfProblem::Malformed("PT_INTERP size overflows"))?;
        let raw = data.get(start..end).ok_or(ElfProblem::Malformed(
            "PT_INTERP points past the end of the file",
        ))?;
        let raw = raw.split(|b| *b == 0).next().unwrap_or_default();
        let path = std::str::from_utf8(raw)
            .map_err(|_| ElfProblem::Malformed("PT_INTERP is not UTF-8"))?;
        interpreter = Some(path.to_owned());
    }
    Ok(ElfInfo {
        architecture: architecture(machine, little),
        interpreter,
    })
}

/// OCI (Go `GOARCH`) names for the common `e_machine` values.
fn architecture(machine: u16, little: bool) -> Option<&'static str> {
    Some(match (machine, little) {
        (3, _) => "386",
        (40, _) => "arm",
        (62, _) => "amd64",
        (183, _) => "arm64",
        (243, _) => "riscv64",
        (21, true) => "ppc64le",
        (21, false) => "ppc64",
        (22, _) => "s390x",
        _ => return None,
    })
}

fn to_usize(n: u64) -> Result<usize, ElfProblem> {
    usize::try_from(n).map_err(|_| ElfProblem::Malformed("offset does not fit in memory"))
}

struct Reader<'a> {
    data: &'a [u8],
    little: bool,
}

impl Reader<'_> {
    fn bytes<const N: usize>(&self, at: usize) -> Result<[u8; N], ElfProblem> {
        at.checked_add(N)
            .and_then(|end| self.data.get(at..end))
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or(ElfProblem::Malformed(
                "header runs past the end of the file",
            ))
    }

    fn u16(&self, at: usize) -> Result<u16, ElfProblem> {
        let b = self.bytes(at)?;
        Ok(if self.little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    }

    fn u32(&self, at: usize) -> Result<u32, ElfProblem> {
        let b = self.bytes(at)?;
        Ok(if self.little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }

    fn u64(&self, at: usize) -> Result<u64, ElfProblem> {
        let b = self.bytes(at)?;
        Ok(if self.little {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_elf_and_truncated_input() {
        assert_eq!(inspect(b"#!/bin/sh\n"), Err(ElfProblem::NotElf));
        assert!(matches!(
            inspect(b"\x7fELF\x02\x01"),
            Err(ElfProblem::Malformed(_))
        ));
    }

    #[test]
    fn reads_the_interpreter_of_a_host_binary() -> Result<(), Box<dyn std::error::Error>> {
        let data = std::fs::read("/bin/sh")?;
        let info = inspect(&data).map_err(|e| format!("{e:?}"))?;
        let interp = info.interpreter.ok_or("/bin/sh should be dynamic")?;
        assert!(
            interp.starts_with('/') && interp.contains("ld-"),
            "{interp}"
        );
        Ok(())
    }
}
