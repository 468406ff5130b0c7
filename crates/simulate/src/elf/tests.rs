//! Tests of the tiny ELF objects: read back, by glibc (dlopen) and by readelf where installed.

use super::*;
use std::ffi::CString;
use std::io::Write;

fn write_temp(bytes: &[u8], name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
    (dir, path)
}

#[test]
fn sysv_hash_known_values() {
    // Known values of the System V ABI's hash function.
    assert_eq!(sysv_hash(b""), 0);
    assert_eq!(sysv_hash(b"printf"), 0x077905a6);
    assert_eq!(sysv_hash(b"exit"), 0x0006cf04);
}

#[test]
fn header_and_soname() {
    let elf = tiny_shared_object("libcuda.so.1", &["cuInit"]);
    assert_eq!(&elf[..4], b"\x7fELF");
    assert_eq!(u16::from_le_bytes([elf[16], elf[17]]), 3, "ET_DYN");
    assert_eq!(u16::from_le_bytes([elf[18], elf[19]]), 62, "EM_X86_64");
    assert_eq!(read_soname(&elf).as_deref(), Some("libcuda.so.1"));
    assert_eq!(
        tiny_shared_object("libcuda.so.1", &["cuInit"]),
        elf,
        "deterministic"
    );
    assert_eq!(read_soname(b"not an elf"), None);
}

/// Load the object with glibc and call the exported function.
fn dlopen_and_call(path: &std::path::Path, symbol: &str) -> i32 {
    let cpath = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: cpath is a valid NUL-terminated string; the object has no constructors.
    let handle = unsafe { libc::dlopen(cpath.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        // SAFETY: dlerror returns a valid C string after a failed dlopen.
        let msg = unsafe { std::ffi::CStr::from_ptr(libc::dlerror()) };
        panic!("dlopen {}: {}", path.display(), msg.to_string_lossy());
    }
    let csym = CString::new(symbol).unwrap();
    // SAFETY: handle came from a successful dlopen; csym is NUL-terminated.
    let f = unsafe { libc::dlsym(handle, csym.as_ptr()) };
    assert!(!f.is_null(), "dlsym {symbol} found nothing");
    // SAFETY: the symbol points at `xor eax, eax; ret`, a function of no arguments returning
    // an int, which is what this type says.
    let f: extern "C" fn() -> i32 = unsafe { std::mem::transmute(f) };
    let ret = f();
    let missing = CString::new("noSuchSymbol").unwrap();
    // SAFETY: as above.
    assert!(unsafe { libc::dlsym(handle, missing.as_ptr()) }.is_null());
    // SAFETY: handle came from dlopen and no pointer into the object outlives this call.
    assert_eq!(unsafe { libc::dlclose(handle) }, 0);
    ret
}

#[test]
fn glibc_loads_it_and_finds_the_symbol() {
    let elf = tiny_shared_object(
        "libcuda.so.1",
        &["cuInit", "cuDriverGetVersion", "cuDeviceGet"],
    );
    let (_dir, path) = write_temp(&elf, "libcuda.so.550.54.15");
    for sym in ["cuInit", "cuDriverGetVersion", "cuDeviceGet"] {
        assert_eq!(dlopen_and_call(&path, sym), 0, "{sym}");
    }
}

#[test]
fn many_symbols_hash_correctly() {
    let names: Vec<String> = (0..200).map(|i| format!("sym_{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let elf = tiny_shared_object("libmany.so.1", &refs);
    assert!(
        elf.len() > 4096,
        "spills over a page: the second segment must move"
    );
    let (_dir, path) = write_temp(&elf, "libmany.so.1");
    assert_eq!(dlopen_and_call(&path, "sym_0"), 0);
    assert_eq!(dlopen_and_call(&path, "sym_199"), 0);
}

#[test]
fn no_symbols_still_loads() {
    let elf = tiny_shared_object("libnvidia-cfg.so.1", &[]);
    let (_dir, path) = write_temp(&elf, "libnvidia-cfg.so.550.54.15");
    let cpath = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid C string; the object has no constructors.
    let handle = unsafe { libc::dlopen(cpath.as_ptr(), libc::RTLD_NOW) };
    assert!(!handle.is_null());
    // SAFETY: handle from a successful dlopen.
    assert_eq!(unsafe { libc::dlclose(handle) }, 0);
}

#[test]
fn readelf_agrees() {
    let Ok(out) = std::process::Command::new("readelf")
        .arg("--version")
        .output()
    else {
        eprintln!("readelf not installed; skipping");
        return;
    };
    assert!(out.status.success());
    let elf = tiny_shared_object("libnvidia-glcore.so.550.54.15", &["glcore_entry"]);
    let (_dir, path) = write_temp(&elf, "libnvidia-glcore.so.550.54.15");
    let out = std::process::Command::new("readelf")
        .args(["-W", "-d", "-S", "--dyn-syms"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.trim().is_empty(), "readelf complains: {err}");
    assert!(
        text.contains("(SONAME)             Library soname: [libnvidia-glcore.so.550.54.15]"),
        "{text}"
    );
    assert!(
        text.contains("FUNC    GLOBAL DEFAULT    4 glcore_entry"),
        "{text}"
    );
    for section in [".hash", ".dynsym", ".dynstr", ".text", ".dynamic"] {
        assert!(text.contains(section), "{section} missing: {text}");
    }
}
