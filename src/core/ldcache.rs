//! The dynamic linker's cache, `/etc/ld.so.cache`: a parser for both formats glibc's `ld.so`
//! reads, and a writer of the current one.
//!
//! Formats (glibc `sysdeps/generic/dl-cache.h`, `elf/cache.c`, `elf/dl-cache.c`):
//!
//! * **old** (`ld.so-1.7.0`, libc5 to glibc 2.1): a 16-byte header (magic padded to 12 bytes,
//!   `nlibs`), `nlibs` entries of `{i32 flags, u32 key, u32 value}`, then the string table. String
//!   offsets count from the end of the entries.
//! * **compat** (glibc 2.2 to 2.31 by default): an old-format cache whose string table starts
//!   (8-byte aligned) with a complete new-format cache. `ld.so` uses the new part.
//! * **new** (`glibc-ld.so.cache1.1`, the only one glibc >= 2.32's ldconfig writes, Debian 12
//!   included): a 48-byte header (`nlibs`, `len_strings`, endianness `flags`,
//!   `extension_offset`), `nlibs` entries of `{i32 flags, u32 key, u32 value, u32 osversion, u64
//!   hwcap}`, the string table, then (4-aligned) an extension directory: a generator string and
//!   the `glibc-hwcaps` subdirectory names. String offsets count from the new header.
//!
//! `ld.so` binary-searches the entries, so they must be sorted the way ldconfig sorts them:
//! descending by [`libcmp`] (names compared with digit runs as numbers), then by flags, with
//! `glibc-hwcaps` entries first. [`LdCache::to_bytes`] sorts before writing.
//!
//! The parser reads files from container images, which an image author controls: every offset
//! and count is checked against the file's size, and nothing can make it panic or allocate more
//! than the file's size times a small factor.

use std::cmp::Ordering;

/// `flags` of a 64-bit x86 library (`FLAG_ELF_LIBC6 | FLAG_X8664_LIB64`): what `ld.so` on x86-64
/// looks for.
pub const FLAGS_X86_64: i32 = 0x0303;
/// `flags` of a 32-bit x86 library (`FLAG_ELF_LIBC6`): what the i386 `ld.so` looks for.
pub const FLAGS_I386: i32 = 0x0003;

const OLD_MAGIC: &[u8] = b"ld.so-1.7.0";
const NEW_MAGIC: &[u8] = b"glibc-ld.so.cache1.1";
/// `sizeof (struct cache_file)`: the magic padded to 12 bytes and `nlibs`.
const OLD_HEADER: usize = 16;
const OLD_ENTRY: usize = 12;
/// `sizeof (struct cache_file_new)`.
const NEW_HEADER: usize = 48;
const NEW_ENTRY: usize = 24;
/// `cache_file_new_flags_endian_little`.
const ENDIAN_LITTLE: u8 = 2;
const ENDIAN_MASK: u8 = 3;
/// `cache_extension_magic`, `(uint32_t) -358342284`.
const EXTENSION_MAGIC: u32 = 0xeaa4_2174;
const TAG_GENERATOR: u32 = 0;
const TAG_GLIBC_HWCAPS: u32 = 1;
/// `DL_CACHE_HWCAP_EXTENSION`: the low 32 bits of `hwcap` index the glibc-hwcaps names.
const HWCAP_EXTENSION: u64 = 1 << 62;
/// `DL_CACHE_HWCAP_ISA_LEVEL_MASK` (of the upper 32 bits).
const ISA_LEVEL_MASK: u64 = (1 << 10) - 1;
/// The largest cache this module reads: real ones are tens of kilobytes.
pub const MAX_SIZE: usize = 64 << 20;

/// Why bytes are not an ld cache. The caller names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LdCacheError {
    #[error(
        "not an ld.so cache (neither the \"ld.so-1.7.0\" nor the \"glibc-ld.so.cache1.1\" format)"
    )]
    BadMagic,
    #[error("truncated: {what} needs {need} bytes but the file has {have}")]
    Truncated {
        what: &'static str,
        need: u64,
        have: usize,
    },
    #[error("string offset {offset} of entry {entry} is outside the file or not NUL-terminated")]
    BadString { entry: usize, offset: u64 },
    #[error("written for a big-endian machine (flags {flags:#x}); this is x86-64")]
    WrongEndian { flags: u8 },
    #[error("larger than {MAX_SIZE} bytes ({size}); a real cache is tens of kilobytes")]
    TooLarge { size: usize },
}

/// Which on-disk format a parsed cache came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Old,
    /// An old-format header with the new format inside its string table.
    Compat,
    New,
}

/// What the `hwcap` field of an entry says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hwcap {
    /// The legacy hwcap bits (0 for an ordinary library).
    Bits(u64),
    /// A library in a `glibc-hwcaps/<name>` subdirectory, with its ISA level.
    Subdir { name: Vec<u8>, isa_level: u32 },
}

/// One library of the cache: `key` is the name programs ask for (a soname), `value` the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub flags: i32,
    pub osversion: u32,
    pub hwcap: Hwcap,
}

impl Entry {
    /// An ordinary library: `soname` found at `path`, for the architecture of `flags`.
    pub fn new(soname: &str, path: &str, flags: i32) -> Entry {
        Entry {
            key: soname.as_bytes().to_vec(),
            value: path.as_bytes().to_vec(),
            flags,
            osversion: 0,
            hwcap: Hwcap::Bits(0),
        }
    }

    /// The key as text (lossy for names that are not UTF-8).
    pub fn soname(&self) -> String {
        String::from_utf8_lossy(&self.key).into_owned()
    }

    /// The value as text (lossy for names that are not UTF-8).
    pub fn path(&self) -> String {
        String::from_utf8_lossy(&self.value).into_owned()
    }

    fn hwcaps_name(&self) -> Option<&[u8]> {
        match &self.hwcap {
            Hwcap::Subdir { name, .. } => Some(name),
            Hwcap::Bits(_) => None,
        }
    }

    fn hwcap_bits(&self) -> u64 {
        match self.hwcap {
            Hwcap::Bits(b) => b,
            Hwcap::Subdir { .. } => 0,
        }
    }
}

/// A parsed cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdCache {
    pub entries: Vec<Entry>,
    /// Who wrote it (the generator extension), when it says.
    pub generator: Option<String>,
    pub format: Format,
}

impl Default for LdCache {
    fn default() -> Self {
        LdCache {
            entries: Vec::new(),
            generator: None,
            format: Format::New,
        }
    }
}

/// glibc's `_dl_cache_libcmp`: byte order (of C's signed `char`, as on x86-64), except that runs
/// of digits compare as numbers (`libfoo.so.10` > `libfoo.so.9`) and a digit sorts after any
/// other byte.
pub fn libcmp(a: &[u8], b: &[u8]) -> Ordering {
    let signed = |c: u8| c as i8;
    let (mut i, mut j) = (0, 0);
    loop {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(j).copied().unwrap_or(0);
        if x == 0 {
            return 0.cmp(&signed(y));
        }
        match (x.is_ascii_digit(), y.is_ascii_digit()) {
            (true, true) => {
                // glibc accumulates each run into an int; compare the runs by value without
                // overflowing: leading zeros stripped, then by length, then digit by digit.
                let run = |s: &[u8], k: usize| {
                    let end = s[k..]
                        .iter()
                        .position(|c| !c.is_ascii_digit())
                        .map_or(s.len(), |p| k + p);
                    let digits = &s[k..end];
                    let zeros = digits.iter().take_while(|c| **c == b'0').count();
                    (digits[zeros..].to_vec(), end)
                };
                let (na, ea) = run(a, i);
                let (nb, eb) = run(b, j);
                let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(&nb));
                if ord != Ordering::Equal {
                    return ord;
                }
                i = ea;
                j = eb;
            }
            (true, false) => return Ordering::Greater,
            (false, true) => return Ordering::Less,
            (false, false) if x != y => return signed(x).cmp(&signed(y)),
            (false, false) => {
                i += 1;
                j += 1;
            }
        }
    }
}

/// ldconfig's `compare`: the order entries must have in the file.
fn entry_order(e1: &Entry, e2: &Entry) -> Ordering {
    libcmp(&e2.key, &e1.key)
        .then_with(|| e2.flags.cmp(&e1.flags))
        .then_with(|| match (e1.hwcaps_name(), e2.hwcaps_name()) {
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(a), Some(b)) => a.cmp(b),
            (None, None) => Ordering::Equal,
        })
        .then_with(|| {
            e2.hwcap_bits()
                .count_ones()
                .cmp(&e1.hwcap_bits().count_ones())
        })
        .then_with(|| e2.hwcap_bits().cmp(&e1.hwcap_bits()))
        .then_with(|| e2.osversion.cmp(&e1.osversion))
}

fn u32_at(b: &[u8], at: usize, what: &'static str) -> Result<u32, LdCacheError> {
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

fn align8(n: usize) -> usize {
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

    /// The file `ld.so` would load for `soname` with `flags` (ignoring hwcaps subdirectories and
    /// legacy hwcap entries, which driver libraries never use).
    pub fn lookup(&self, soname: &str, flags: i32) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.key == soname.as_bytes() && e.flags == flags && e.hwcap == Hwcap::Bits(0))
    }

    /// Add `new` entries, replacing every entry with the same key and flags (the container's
    /// own libraries of those names give way to the injected ones). Returns how many entries it
    /// replaced.
    pub fn merge(&mut self, new: &[Entry]) -> usize {
        let before = self.entries.len();
        self.entries.retain(|e| {
            !new.iter()
                .any(|n| n.key == e.key && n.flags == e.flags && e.hwcaps_name().is_none())
        });
        let replaced = before - self.entries.len();
        for n in new {
            if !self.entries.contains(n) {
                self.entries.push(n.clone());
            }
        }
        replaced
    }

    /// Sort the entries the way ldconfig does (and `ld.so`'s binary search needs).
    pub fn sort(&mut self) {
        self.entries.sort_by(entry_order);
    }

    /// The cache in the new format (`glibc-ld.so.cache1.1`, little-endian), entries sorted,
    /// with a generator extension naming `generator` and the glibc-hwcaps names when any entry
    /// uses them.
    pub fn to_bytes(&self, generator: &str) -> Vec<u8> {
        let mut entries = self.entries.clone();
        entries.sort_by(entry_order);
        let mut subdirs: Vec<Vec<u8>> = entries
            .iter()
            .filter_map(|e| e.hwcaps_name().map(<[u8]>::to_vec))
            .collect();
        subdirs.sort();
        subdirs.dedup();

        let strings_at = NEW_HEADER + NEW_ENTRY * entries.len();
        let mut strings: Vec<u8> = Vec::new();
        let mut interned: std::collections::HashMap<Vec<u8>, u32> =
            std::collections::HashMap::new();
        let mut intern = |s: &[u8], strings: &mut Vec<u8>| -> u32 {
            if let Some(at) = interned.get(s) {
                return *at;
            }
            let at = (strings_at + strings.len()) as u32;
            strings.extend_from_slice(s);
            strings.push(0);
            interned.insert(s.to_vec(), at);
            at
        };
        let mut table = Vec::with_capacity(NEW_ENTRY * entries.len());
        for e in &entries {
            let key = intern(&e.key, &mut strings);
            let value = intern(&e.value, &mut strings);
            let hwcap = match &e.hwcap {
                Hwcap::Bits(b) => *b,
                Hwcap::Subdir { name, isa_level } => {
                    let index = subdirs.iter().position(|s| s == name).unwrap_or(0) as u64;
                    HWCAP_EXTENSION | ((u64::from(*isa_level) & ISA_LEVEL_MASK) << 32) | index
                }
            };
            table.extend_from_slice(&e.flags.to_le_bytes());
            table.extend_from_slice(&key.to_le_bytes());
            table.extend_from_slice(&value.to_le_bytes());
            table.extend_from_slice(&e.osversion.to_le_bytes());
            table.extend_from_slice(&hwcap.to_le_bytes());
        }
        let subdir_offsets: Vec<u32> = subdirs.iter().map(|s| intern(s, &mut strings)).collect();

        let ext_offset = (strings_at + strings.len()).next_multiple_of(4);
        let mut out = Vec::with_capacity(ext_offset + 64 + generator.len());
        out.extend_from_slice(NEW_MAGIC);
        out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        out.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        out.push(ENDIAN_LITTLE);
        out.extend_from_slice(&[0; 3]);
        out.extend_from_slice(&(ext_offset as u32).to_le_bytes());
        out.extend_from_slice(&[0; 12]);
        out.extend_from_slice(&table);
        out.extend_from_slice(&strings);
        out.resize(ext_offset, 0);

        // The extension directory, then the hwcaps array, then the generator string (ldconfig's
        // layout).
        let sections = if subdirs.is_empty() { 1 } else { 2 };
        let dir_size = 8 + 16 * sections;
        let hwcaps_at = ext_offset + dir_size;
        let hwcaps_size = 4 * subdir_offsets.len();
        let generator_at = hwcaps_at + hwcaps_size;
        out.extend_from_slice(&EXTENSION_MAGIC.to_le_bytes());
        out.extend_from_slice(&(sections as u32).to_le_bytes());
        for (tag, at, size) in [
            (TAG_GENERATOR, generator_at, generator.len()),
            (TAG_GLIBC_HWCAPS, hwcaps_at, hwcaps_size),
        ]
        .into_iter()
        .take(sections)
        {
            out.extend_from_slice(&tag.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&(at as u32).to_le_bytes());
            out.extend_from_slice(&(size as u32).to_le_bytes());
        }
        for at in subdir_offsets {
            out.extend_from_slice(&at.to_le_bytes());
        }
        out.extend_from_slice(generator.as_bytes());
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    /// Assemble an old-format cache by hand (glibc no longer writes one): header, entries, then
    /// the string table, offsets counted from its start.
    pub(crate) fn old_format(entries: &[(&str, &str, i32)]) -> Vec<u8> {
        let mut strings = Vec::new();
        let mut table = Vec::new();
        for (key, value, flags) in entries {
            let k = strings.len() as u32;
            strings.extend_from_slice(key.as_bytes());
            strings.push(0);
            let v = strings.len() as u32;
            strings.extend_from_slice(value.as_bytes());
            strings.push(0);
            table.extend_from_slice(&flags.to_le_bytes());
            table.extend_from_slice(&k.to_le_bytes());
            table.extend_from_slice(&v.to_le_bytes());
        }
        let mut out = OLD_MAGIC.to_vec();
        out.push(0);
        out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        out.extend_from_slice(&table);
        out.extend_from_slice(&strings);
        out
    }

    /// glibc 2.2-2.31's default: an old-format cache with a new-format one hidden at the start
    /// of its string table. The new part's string offsets count from the new header, the old
    /// part's from the (unaligned) end of the old entries.
    pub(crate) fn compat_format(entries: &[(&str, &str, i32)]) -> Vec<u8> {
        let mut c = LdCache::default();
        for (k, v, f) in entries {
            c.entries.push(Entry::new(k, v, *f));
        }
        c.sort();
        let mut new = c.to_bytes("compat test");
        let old_end = OLD_HEADER + OLD_ENTRY * c.entries.len();
        let pad = align8(old_end) - old_end;
        // The extension directory and its sections are located by file offsets: shift them by
        // the old part in front.
        let shift = (old_end + pad) as u32;
        let ext = u32_at(&new, 32, "").unwrap();
        new[32..36].copy_from_slice(&(ext + shift).to_le_bytes());
        let count = u32_at(&new, ext as usize + 4, "").unwrap() as usize;
        for i in 0..count {
            let at = ext as usize + 8 + 16 * i + 8;
            let off = u32_at(&new, at, "").unwrap();
            new[at..at + 4].copy_from_slice(&(off + shift).to_le_bytes());
        }
        let mut out = OLD_MAGIC.to_vec();
        out.push(0);
        out.extend_from_slice(&(c.entries.len() as u32).to_le_bytes());
        let reparsed = LdCache::parse(&new).unwrap();
        for (i, e) in reparsed.entries.iter().enumerate() {
            // Find the offsets the new part used and shift them by the pad.
            let at = NEW_HEADER + NEW_ENTRY * i;
            let key = u32_at(&new, at + 4, "").unwrap();
            let value = u32_at(&new, at + 8, "").unwrap();
            out.extend_from_slice(&e.flags.to_le_bytes());
            out.extend_from_slice(&(key + pad as u32).to_le_bytes());
            out.extend_from_slice(&(value + pad as u32).to_le_bytes());
        }
        out.resize(out.len() + pad, 0);
        out.extend_from_slice(&new);
        out
    }

    fn host_ldconfig() -> Option<std::path::PathBuf> {
        ["/sbin/ldconfig", "/usr/sbin/ldconfig"]
            .iter()
            .map(Path::new)
            .find(|p| p.is_file())
            .map(Path::to_path_buf)
    }

    /// `ldconfig -C file -p`: `key (flags) => value` lines, as glibc's own reader prints them.
    fn ldconfig_listing(ldconfig: &Path, file: &Path) -> Vec<String> {
        let out = Command::new(ldconfig)
            .arg("-C")
            .arg(file)
            .arg("-p")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with('\t'))
            .map(|l| l.trim().to_string())
            .collect()
    }

    fn arch_name(flags: i32) -> &'static str {
        match flags {
            FLAGS_X86_64 => "libc6,x86-64",
            FLAGS_I386 => "libc6",
            _ => "other",
        }
    }

    #[test]
    fn libcmp_compares_numbers_as_numbers() {
        use Ordering::*;
        let c = |a: &str, b: &str| libcmp(a.as_bytes(), b.as_bytes());
        assert_eq!(c("libfoo.so.10", "libfoo.so.9"), Greater);
        assert_eq!(c("libfoo.so.1", "libfoo.so.1"), Equal);
        assert_eq!(c("libfoo.so", "libfoo.so.1"), Less);
        assert_eq!(c("libfoo.so.01", "libfoo.so.1"), Equal);
        assert_eq!(c("lib9", "liba"), Greater, "a digit sorts after a letter");
        assert_eq!(c("libA", "liba"), Less);
        assert_eq!(
            c("lib\u{e9}", "libz"),
            Less,
            "bytes >= 0x80 are negative chars"
        );
        assert_eq!(c("lib", "lib\u{e9}"), Greater);
        assert_eq!(
            c(
                "libx.so.99999999999999999999",
                "libx.so.99999999999999999998"
            ),
            Greater
        );
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let mut c = LdCache::default();
        c.entries.push(Entry::new(
            "libcuda.so.1",
            "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
            FLAGS_X86_64,
        ));
        c.entries.push(Entry::new(
            "libcuda.so.1",
            "/usr/lib32/libcuda.so.1",
            FLAGS_I386,
        ));
        c.entries.push(Entry {
            key: b"libz.so.1".to_vec(),
            value: b"/usr/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libz.so.1".to_vec(),
            flags: FLAGS_X86_64,
            osversion: 0,
            hwcap: Hwcap::Subdir {
                name: b"x86-64-v3".to_vec(),
                isa_level: 3,
            },
        });
        c.entries.push(Entry {
            key: b"libz.so.1".to_vec(),
            value: b"/usr/lib/x86_64-linux-gnu/libz.so.1".to_vec(),
            flags: FLAGS_X86_64,
            osversion: 0x0302_0000,
            hwcap: Hwcap::Bits(0),
        });
        c.entries.push(Entry {
            key: vec![b'l', b'i', b'b', 0xff, b'.', b's', b'o'],
            value: b"/weird/\xfe".to_vec(),
            flags: FLAGS_X86_64,
            osversion: 0,
            hwcap: Hwcap::Bits(0),
        });
        let bytes = c.to_bytes("migcage test");
        let back = LdCache::parse(&bytes).unwrap();
        assert_eq!(back.format, Format::New);
        assert_eq!(back.generator.as_deref(), Some("migcage test"));
        let mut sorted = c.clone();
        sorted.sort();
        assert_eq!(back.entries, sorted.entries);
        // Writing what was read gives the same bytes.
        assert_eq!(back.to_bytes("migcage test"), bytes);
        // hwcaps entries come before the plain one of the same name.
        let z: Vec<&Entry> = back
            .entries
            .iter()
            .filter(|e| e.key == b"libz.so.1")
            .collect();
        assert!(matches!(z[0].hwcap, Hwcap::Subdir { .. }));
    }

    #[test]
    fn sorted_descending_as_ld_so_searches() {
        let mut c = LdCache::default();
        for k in [
            "liba.so.1",
            "libb.so.10",
            "libb.so.9",
            "libc.so.6",
            "libb.so",
        ] {
            c.entries
                .push(Entry::new(k, &format!("/l/{k}"), FLAGS_X86_64));
        }
        c.sort();
        let keys: Vec<String> = c.entries.iter().map(Entry::soname).collect();
        assert_eq!(
            keys,
            [
                "libc.so.6",
                "libb.so.10",
                "libb.so.9",
                "libb.so",
                "liba.so.1"
            ]
        );
    }

    #[test]
    fn old_and_compat_formats_parse() {
        let libs = [
            ("libcuda.so.1", "/usr/lib/libcuda.so.1", FLAGS_X86_64),
            ("libc.so.6", "/lib/libc.so.6", FLAGS_X86_64),
            ("libm.so.6", "/lib32/libm.so.6", FLAGS_I386),
        ];
        let old = LdCache::parse(&old_format(&libs)).unwrap();
        assert_eq!(old.format, Format::Old);
        let got: Vec<(String, String, i32)> = old
            .entries
            .iter()
            .map(|e| (e.soname(), e.path(), e.flags))
            .collect();
        let want: Vec<(String, String, i32)> = libs
            .iter()
            .map(|(k, v, f)| (k.to_string(), v.to_string(), *f))
            .collect();
        assert_eq!(got, want);
        let compat = LdCache::parse(&compat_format(&libs)).unwrap();
        assert_eq!(compat.format, Format::Compat);
        assert_eq!(compat.generator.as_deref(), Some("compat test"));
        assert_eq!(
            compat
                .lookup("libcuda.so.1", FLAGS_X86_64)
                .map(Entry::path)
                .as_deref(),
            Some("/usr/lib/libcuda.so.1")
        );
        assert!(compat.lookup("libm.so.6", FLAGS_X86_64).is_none());
        assert!(compat.lookup("libm.so.6", FLAGS_I386).is_some());
        // An old cache rewritten comes out in the new format with the same entries.
        let rewritten = LdCache::parse(&old.to_bytes("x")).unwrap();
        let mut sorted = old.clone();
        sorted.sort();
        assert_eq!(rewritten.entries, sorted.entries);
    }

    #[test]
    fn hostile_bytes_are_errors_not_panics() {
        let good = {
            let mut c = LdCache::default();
            c.entries.push(Entry::new("liba.so.1", "/a", FLAGS_X86_64));
            c.to_bytes("g")
        };
        assert_eq!(LdCache::parse(b""), Err(LdCacheError::BadMagic));
        assert_eq!(LdCache::parse(b"hello world"), Err(LdCacheError::BadMagic));
        // Every truncation is an error or a smaller valid cache, never a panic.
        for n in 0..good.len() {
            let _ = LdCache::parse(&good[..n]);
        }
        // A huge nlibs.
        let mut big = good.clone();
        big[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            LdCache::parse(&big),
            Err(LdCacheError::Truncated { .. })
        ));
        let mut old = old_format(&[("a", "b", 3)]);
        old[12..16].copy_from_slice(&0x4000_0000u32.to_le_bytes());
        assert!(matches!(
            LdCache::parse(&old),
            Err(LdCacheError::Truncated { .. })
        ));
        // A string offset past the end.
        let mut bad = good.clone();
        bad[NEW_HEADER + 4..NEW_HEADER + 8].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        assert!(matches!(
            LdCache::parse(&bad),
            Err(LdCacheError::BadString { entry: 0, .. })
        ));
        // Big-endian flags.
        let mut be = good.clone();
        be[28] = 3;
        assert_eq!(
            LdCache::parse(&be),
            Err(LdCacheError::WrongEndian { flags: 3 })
        );
        // A broken extension directory is ignored, as ld.so ignores it.
        let mut ext = good.clone();
        ext[32..36].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        let c = LdCache::parse(&ext).unwrap();
        assert_eq!(c.generator, None);
        assert_eq!(c.entries.len(), 1);
        // Every byte flipped: no panic.
        for i in 0..good.len() {
            let mut m = good.clone();
            m[i] ^= 0xff;
            let _ = LdCache::parse(&m);
        }
        for e in [
            LdCacheError::BadMagic,
            LdCacheError::TooLarge { size: MAX_SIZE + 1 },
        ] {
            assert!(!e.to_string().contains('\n'));
        }
    }

    #[test]
    fn merge_replaces_same_names_only() {
        let mut c = LdCache::default();
        c.entries.push(Entry::new(
            "libcuda.so.1",
            "/image/stub/libcuda.so.1",
            FLAGS_X86_64,
        ));
        c.entries.push(Entry::new(
            "libcuda.so.1",
            "/lib32/libcuda.so.1",
            FLAGS_I386,
        ));
        c.entries
            .push(Entry::new("libc.so.6", "/lib/libc.so.6", FLAGS_X86_64));
        let ours = [Entry::new(
            "libcuda.so.1",
            "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
            FLAGS_X86_64,
        )];
        assert_eq!(c.merge(&ours), 1);
        assert_eq!(c.merge(&ours), 1, "merging twice keeps one copy");
        assert_eq!(c.entries.len(), 3);
        assert_eq!(
            c.lookup("libcuda.so.1", FLAGS_X86_64).unwrap().path(),
            "/usr/lib/x86_64-linux-gnu/libcuda.so.1"
        );
        assert_eq!(
            c.lookup("libcuda.so.1", FLAGS_I386).unwrap().path(),
            "/lib32/libcuda.so.1"
        );
    }

    /// The machine's own cache, written by Debian's ldconfig: it parses, and lists what glibc's
    /// own reader lists.
    #[test]
    fn the_hosts_cache_parses_like_ldconfig_reads_it() {
        let path = Path::new("/etc/ld.so.cache");
        let Some(ldconfig) = host_ldconfig() else {
            eprintln!("SKIP the_hosts_cache_parses_like_ldconfig_reads_it: no ldconfig (Debian: libc-bin)");
            return;
        };
        let bytes = std::fs::read(path).unwrap();
        let c = LdCache::parse(&bytes).unwrap();
        assert!(!c.entries.is_empty());
        assert!(c.lookup("libc.so.6", FLAGS_X86_64).is_some());
        let ours: Vec<String> = c
            .entries
            .iter()
            .map(|e| format!("{} ({}", e.soname(), arch_name(e.flags)))
            .collect();
        let theirs = ldconfig_listing(&ldconfig, path);
        assert_eq!(ours.len(), theirs.len());
        for (o, t) in ours.iter().zip(&theirs) {
            assert!(t.starts_with(o.as_str()), "{o} vs {t}");
        }
        // The file was sorted by ldconfig: sorting again changes nothing.
        let mut sorted = c.clone();
        sorted.sort();
        assert_eq!(sorted.entries, c.entries);
    }

    /// What this writer writes, glibc's reader reads: `ldconfig -p` on a rewritten copy of the
    /// host's cache plus an added library lists exactly the same lines plus that one.
    #[test]
    fn ldconfig_reads_what_we_write() {
        let Some(ldconfig) = host_ldconfig() else {
            eprintln!("SKIP ldconfig_reads_what_we_write: no ldconfig (Debian: libc-bin)");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let host = Path::new("/etc/ld.so.cache");
        let mut c = LdCache::parse(&std::fs::read(host).unwrap()).unwrap();
        c.merge(&[Entry::new(
            "libcuda.so.1",
            "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
            FLAGS_X86_64,
        )]);
        let file = dir.path().join("ld.so.cache");
        std::fs::write(&file, c.to_bytes("migcage test")).unwrap();
        let mut want = ldconfig_listing(&ldconfig, host);
        want.retain(|l| !l.starts_with("libcuda.so.1 (libc6,x86-64)"));
        let got = ldconfig_listing(&ldconfig, &file);
        assert!(got.contains(
            &"libcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1".to_string()
        ));
        let mut got_rest = got.clone();
        got_rest.retain(|l| !l.starts_with("libcuda.so.1 (libc6,x86-64)"));
        assert_eq!(got_rest, want);
        let out = Command::new(&ldconfig)
            .arg("-C")
            .arg(&file)
            .arg("-p")
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("Cache generated by: migcage test"));
    }
}
