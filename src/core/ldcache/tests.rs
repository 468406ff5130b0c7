//! Tests of the ld cache: hand-made and hostile bytes, and the round trip through ldconfig.

use super::*;
use std::cmp::Ordering;
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
        crate::testing::skip(
            "the_hosts_cache_parses_like_ldconfig_reads_it: no ldconfig (Debian: libc-bin)",
        );
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
        crate::testing::skip("ldconfig_reads_what_we_write: no ldconfig (Debian: libc-bin)");
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
