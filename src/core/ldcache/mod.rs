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

mod libcmp;
mod parse;
mod write;

use libcmp::entry_order;
pub use libcmp::libcmp;
#[cfg(test)]
use parse::{align8, u32_at};

impl LdCache {
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
}

#[cfg(test)]
pub(crate) mod tests;
