//! The writer of the new format.

use super::*;

impl LdCache {
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
