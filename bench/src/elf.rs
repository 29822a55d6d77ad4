//! The size of a binary and whether it is stripped, read from its ELF section headers (pure parsing, so it can be tested).

use anyhow::{anyhow, bail, Context as _};
use serde::Serialize;
use std::path::Path;

/// What the bench says about the `bootstrap` file.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct BinaryFacts {
    /// Size on disk.
    pub(crate) bytes: u64,
    /// A `.symtab` section is present (not stripped of symbols).
    pub(crate) has_symtab: bool,
    /// `.debug_*` sections are present (debug info not stripped).
    pub(crate) has_debug_info: bool,
}

impl BinaryFacts {
    /// Reads `path`.
    pub(crate) fn read(path: &Path) -> anyhow::Result<Self> {
        let data = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
        let names =
            section_names(&data).with_context(|| format!("parse {} as ELF", path.display()))?;
        Ok(Self {
            bytes: data.len() as u64,
            has_symtab: names.iter().any(|n| n == ".symtab"),
            has_debug_info: names.iter().any(|n| n.starts_with(".debug_")),
        })
    }

    /// Stripped means neither symbols nor debug info.
    pub(crate) fn stripped(&self) -> bool {
        !self.has_symtab && !self.has_debug_info
    }

    /// `stripped`, or what is left in.
    pub(crate) fn describe(&self) -> &'static str {
        match (self.has_symtab, self.has_debug_info) {
            (false, false) => "stripped",
            (true, false) => "not stripped (symbol table, no debug info)",
            (false, true) => "not stripped (debug info, no symbol table)",
            (true, true) => "not stripped (symbol table and debug info)",
        }
    }
}

/// The section names of a 64- or 32-bit, little- or big-endian ELF file.
pub(crate) fn section_names(data: &[u8]) -> anyhow::Result<Vec<String>> {
    if data.get(..4) != Some(b"\x7fELF".as_slice()) {
        bail!("no ELF magic");
    }
    let wide = match data.get(4) {
        Some(1) => false,
        Some(2) => true,
        other => bail!("unknown ELF class {other:?}"),
    };
    let little = match data.get(5) {
        Some(1) => true,
        Some(2) => false,
        other => bail!("unknown ELF data encoding {other:?}"),
    };
    let read = |offset: usize, len: usize| -> anyhow::Result<u64> {
        let bytes = data
            .get(offset..offset + len)
            .ok_or_else(|| anyhow!("truncated at byte {offset}"))?;
        let mut value = 0u64;
        for i in 0..len {
            let byte = if little { bytes[len - 1 - i] } else { bytes[i] };
            value = (value << 8) | u64::from(byte);
        }
        Ok(value)
    };
    let usize_of = |v: u64| usize::try_from(v).map_err(|_| anyhow!("offset {v} too large"));
    // e_shoff, e_shentsize, e_shnum, e_shstrndx.
    let (shoff, shentsize, shnum, shstrndx) = if wide {
        (
            read(0x28, 8)?,
            read(0x3a, 2)?,
            read(0x3c, 2)?,
            read(0x3e, 2)?,
        )
    } else {
        (
            read(0x20, 4)?,
            read(0x2e, 2)?,
            read(0x30, 2)?,
            read(0x32, 2)?,
        )
    };
    let (shoff, shentsize, shnum, shstrndx) = (
        usize_of(shoff)?,
        usize_of(shentsize)?,
        usize_of(shnum)?,
        usize_of(shstrndx)?,
    );
    if shnum == 0 {
        return Ok(Vec::new());
    }
    // Within a section header: sh_name (4 bytes at 0), then sh_offset.
    let header = |index: usize| -> anyhow::Result<(usize, usize)> {
        let at = shoff
            .checked_add(
                index
                    .checked_mul(shentsize)
                    .ok_or_else(|| anyhow!("overflow"))?,
            )
            .ok_or_else(|| anyhow!("overflow"))?;
        let name = usize_of(read(at, 4)?)?;
        let offset = if wide {
            read(at + 0x18, 8)?
        } else {
            read(at + 0x10, 4)?
        };
        Ok((name, usize_of(offset)?))
    };
    let (_, strtab) = header(shstrndx)?;
    let mut names = Vec::with_capacity(shnum);
    for index in 0..shnum {
        let (name, _) = header(index)?;
        let start = strtab
            .checked_add(name)
            .ok_or_else(|| anyhow!("overflow"))?;
        let rest = data
            .get(start..)
            .ok_or_else(|| anyhow!("section name {index} outside the file"))?;
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        names.push(String::from_utf8_lossy(&rest[..end]).into_owned());
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// A minimal 64-bit little-endian ELF with the given section names.
    fn elf64(sections: &[&str]) -> Vec<u8> {
        let mut strtab = vec![0u8];
        let mut name_offsets = Vec::new();
        for s in sections.iter().chain(std::iter::once(&".shstrtab")) {
            name_offsets.push(strtab.len() as u32);
            strtab.extend_from_slice(s.as_bytes());
            strtab.push(0);
        }
        let strtab_offset = 64u64;
        let shoff = strtab_offset + strtab.len() as u64;
        let shnum = (name_offsets.len() + 1) as u16; // plus the null section
        let mut out = vec![0u8; 64];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = 2;
        out[5] = 1;
        out[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        out[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        out[0x3c..0x3e].copy_from_slice(&shnum.to_le_bytes());
        out[0x3e..0x40].copy_from_slice(&(shnum - 1).to_le_bytes());
        out.extend_from_slice(&strtab);
        out.extend_from_slice(&[0u8; 64]); // null section
        for name in name_offsets {
            let mut h = [0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&strtab_offset.to_le_bytes());
            out.extend_from_slice(&h);
        }
        out
    }

    #[test]
    fn reads_section_names() {
        let names = section_names(&elf64(&[".text", ".symtab", ".debug_info"])).unwrap();
        assert_eq!(names, ["", ".text", ".symtab", ".debug_info", ".shstrtab"]);
    }

    #[test]
    fn tells_stripped_from_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin");
        std::fs::write(&path, elf64(&[".text", ".symtab"])).unwrap();
        let facts = BinaryFacts::read(&path).unwrap();
        assert!(facts.has_symtab && !facts.has_debug_info && !facts.stripped());
        std::fs::write(&path, elf64(&[".text"])).unwrap();
        let facts = BinaryFacts::read(&path).unwrap();
        assert!(facts.stripped());
        assert_eq!(facts.describe(), "stripped");
    }

    #[test]
    fn rejects_non_elf_and_truncation() {
        assert!(section_names(b"#!/bin/sh\n").is_err());
        let mut data = elf64(&[".text"]);
        data.truncate(100);
        assert!(section_names(&data).is_err());
    }

    #[test]
    fn reads_this_test_binary() {
        let exe = std::env::current_exe().unwrap();
        let facts = BinaryFacts::read(&exe).unwrap();
        assert!(facts.bytes > 0);
        assert!(!facts.stripped(), "test binaries keep their symbols");
    }
}
