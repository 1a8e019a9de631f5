//! Helpers shared by the `image` test binaries.

use std::path::{Path, PathBuf};

/// A 64-byte ELF64 executable header with no program headers: static, for `machine`.
pub fn fake_static_elf(dir: &Path, machine: u16) -> Result<PathBuf, std::io::Error> {
    let mut elf = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
    elf.resize(16, 0);
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&machine.to_le_bytes());
    elf.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    elf.resize(52, 0); // entry, phoff = 0, shoff, flags
    elf.extend_from_slice(&64u16.to_le_bytes()); // ehsize
    elf.extend_from_slice(&56u16.to_le_bytes()); // phentsize
    elf.resize(64, 0); // phnum = 0, sections
    let path = dir.join(format!("static-{machine}"));
    std::fs::write(&path, elf)?;
    Ok(path)
}
