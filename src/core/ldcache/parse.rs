//! The parser of all three formats. Every offset and count is checked against the input.

use super::*;

pub(super) fn u32_at(b: &[u8], at: usize, what: &'static str) -> Result<u32, LdCacheError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(LdCacheError::Truncated {
            what,
            need: at as u64 + 4,
            have: b.len(),
        })
}

fn u64_at(b: &[u8], at: usize, what: &'static str) -> Result<u64, LdCacheError> {
    let lo = u32_at(b, at, what)?;
    let hi = u32_at(b, at + 4, what)?;
    Ok(u64::from(lo) | (u64::from(hi) << 32))
}

/// The NUL-terminated string at `base + offset`.
fn string_at(b: &[u8], base: usize, offset: u32, entry: usize) -> Result<Vec<u8>, LdCacheError> {
    let bad = LdCacheError::BadString {
        entry,
        offset: offset as u64,
    };
    let start = base.checked_add(offset as usize).ok_or(bad.clone())?;
    let rest = b.get(start..).ok_or(bad.clone())?;
    let len = rest.iter().position(|c| *c == 0).ok_or(bad)?;
    Ok(rest[..len].to_vec())
}

fn need(b: &[u8], size: u64, what: &'static str) -> Result<(), LdCacheError> {
    if (b.len() as u64) < size {
        return Err(LdCacheError::Truncated {
            what,
            need: size,
            have: b.len(),
        });
    }
    Ok(())
}

pub(super) fn align8(n: usize) -> usize {
    (n + 7) & !7
}

/// What the extension directory of a new-format cache says.
#[derive(Default)]
struct Extensions {
    generator: Option<String>,
    /// The glibc-hwcaps subdirectory names, in section order.
    hwcaps: Option<Vec<Vec<u8>>>,
}

/// The extension sections of a new-format cache. A malformed directory is ignored, as `ld.so`
/// ignores it.
fn extensions(b: &[u8], ext_offset: u32) -> Extensions {
    let parse = || -> Option<Extensions> {
        let off = ext_offset as usize;
        if off == 0 || off % 4 != 0 {
            return None;
        }
        if u32_at(b, off, "").ok()? != EXTENSION_MAGIC {
            return None;
        }
        let count = u32_at(b, off + 4, "").ok()? as usize;
        need(b, off as u64 + 8 + 16 * count as u64, "").ok()?;
        let (mut generator, mut hwcaps) = (None, None);
        for i in 0..count {
            let s = off + 8 + 16 * i;
            let tag = u32_at(b, s, "").ok()?;
            let start = u32_at(b, s + 8, "").ok()? as usize;
            let size = u32_at(b, s + 12, "").ok()? as usize;
            let data = b.get(start..start.checked_add(size)?)?;
            match tag {
                TAG_GENERATOR => generator = Some(String::from_utf8_lossy(data).into_owned()),
                TAG_GLIBC_HWCAPS if size % 4 == 0 && start % 4 == 0 => {
                    let names = data
                        .chunks_exact(4)
                        .map(|c| {
                            let at = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                            string_at(b, 0, at, 0).unwrap_or_default()
                        })
                        .collect();
                    hwcaps = Some(names);
                }
                _ => {}
            }
        }
        Some(Extensions { generator, hwcaps })
    };
    parse().unwrap_or_default()
}

/// Parse the new format whose header is at `base`.
fn parse_new(b: &[u8], base: usize, format: Format) -> Result<LdCache, LdCacheError> {
    need(b, (base + NEW_HEADER) as u64, "the new-format header")?;
    let nlibs = u32_at(b, base + 20, "nlibs")? as usize;
    let flags = b[base + 28];
    if flags != 0 && flags & ENDIAN_MASK != ENDIAN_LITTLE {
        return Err(LdCacheError::WrongEndian { flags });
    }
    let entries_end = (base + NEW_HEADER) as u64 + NEW_ENTRY as u64 * nlibs as u64;
    need(b, entries_end, "the new-format entries")?;
    let ext_offset = u32_at(b, base + 32, "extension_offset")?;
    let Extensions { generator, hwcaps } = extensions(b, ext_offset);
    let mut entries = Vec::with_capacity(nlibs);
    for i in 0..nlibs {
        let at = base + NEW_HEADER + NEW_ENTRY * i;
        let flags = u32_at(b, at, "entry flags")? as i32;
        let key = string_at(b, base, u32_at(b, at + 4, "entry key")?, i)?;
        let value = string_at(b, base, u32_at(b, at + 8, "entry value")?, i)?;
        let osversion = u32_at(b, at + 12, "entry osversion")?;
        let raw = u64_at(b, at + 16, "entry hwcap")?;
        let is_ext = (raw >> 32) & !ISA_LEVEL_MASK == HWCAP_EXTENSION >> 32;
        let named = hwcaps
            .as_ref()
            .filter(|_| is_ext)
            .and_then(|names| names.get((raw & 0xffff_ffff) as usize));
        let hwcap = match named {
            Some(name) => Hwcap::Subdir {
                name: name.clone(),
                isa_level: ((raw >> 32) & ISA_LEVEL_MASK) as u32,
            },
            None => Hwcap::Bits(raw),
        };
        entries.push(Entry {
            key,
            value,
            flags,
            osversion,
            hwcap,
        });
    }
    Ok(LdCache {
        entries,
        generator,
        format,
    })
}

impl LdCache {
    /// Parse a cache in any of the three formats.
    pub fn parse(b: &[u8]) -> Result<LdCache, LdCacheError> {
        if b.len() > MAX_SIZE {
            return Err(LdCacheError::TooLarge { size: b.len() });
        }
        if b.starts_with(NEW_MAGIC) {
            return parse_new(b, 0, Format::New);
        }
        if !b.starts_with(OLD_MAGIC) {
            return Err(LdCacheError::BadMagic);
        }
        let nlibs = u32_at(b, 12, "nlibs")? as usize;
        let strings = OLD_HEADER as u64 + OLD_ENTRY as u64 * nlibs as u64;
        need(b, strings, "the old-format entries")?;
        let strings = strings as usize;
        let new_at = align8(strings);
        if b.len() >= new_at + NEW_HEADER && b[new_at..].starts_with(NEW_MAGIC) {
            return parse_new(b, new_at, Format::Compat);
        }
        let mut entries = Vec::with_capacity(nlibs);
        for i in 0..nlibs {
            let at = OLD_HEADER + OLD_ENTRY * i;
            entries.push(Entry {
                flags: u32_at(b, at, "entry flags")? as i32,
                key: string_at(b, strings, u32_at(b, at + 4, "entry key")?, i)?,
                value: string_at(b, strings, u32_at(b, at + 8, "entry value")?, i)?,
                osversion: 0,
                hwcap: Hwcap::Bits(0),
            });
        }
        Ok(LdCache {
            entries,
            generator: None,
            format: Format::Old,
        })
    }
}
