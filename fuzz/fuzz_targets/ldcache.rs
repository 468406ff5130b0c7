//! `ld.so.cache` (src/core/ldcache/: the old, compat and new formats), read from the container
//! image: errors are one line; a cache that parses is written back (new format) and reads back
//! to the same entries, and writing is stable; a merged library is what a lookup finds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use migcage::core::ldcache::{Entry, Format, LdCache};
use migcage_fuzz::assert_one_line;

/// An order on entries for comparing them as multisets.
fn sorted(mut entries: Vec<Entry>) -> Vec<Entry> {
    entries.sort_by_cached_key(|e| format!("{e:?}"));
    entries
}

fuzz_target!(|data: &[u8]| {
    let mut cache = match LdCache::parse(data) {
        Ok(c) => c,
        Err(e) => return assert_one_line("LdCache::parse", &e.to_string()),
    };
    let bytes = cache.to_bytes("migcage-fuzz");
    let back =
        LdCache::parse(&bytes).unwrap_or_else(|e| panic!("a written cache does not parse: {e}"));
    assert_eq!(back.format, Format::New);
    assert_eq!(
        sorted(back.entries.clone()),
        sorted(cache.entries.clone()),
        "written and read back, the entries differ"
    );
    assert_eq!(
        back.to_bytes("migcage-fuzz"),
        bytes,
        "writing is not stable"
    );

    let lib = Entry::new(
        "libcuda.so.1",
        "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
        0x0303,
    );
    cache.merge(std::slice::from_ref(&lib));
    assert_eq!(cache.lookup("libcuda.so.1", 0x0303), Some(&lib));
});
