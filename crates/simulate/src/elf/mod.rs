//! A tiny but real x86-64 ELF shared object: what the simulator installs in place of each driver
//! library, so that `ldconfig` caches it under its soname, `readelf -d` shows the soname and
//! glibc's `dlopen` loads it and `dlsym` finds its symbols.
//!
//! Layout (file offsets; the first segment is mapped at address 0):
//!
//! ```text
//! ELF header | program headers | .hash | .dynsym | .dynstr | .text || .dynamic | .shstrtab | section headers
//! <------------- PT_LOAD #1, read + execute ------------------->   <- PT_LOAD #2, read + write
//! ```
//!
//! The dynamic section sits in its own writable segment (glibc may adjust its entries in place),
//! and a PT_GNU_STACK header says the object does not need an executable stack. Every exported
//! symbol is a function whose body is `xor eax, eax; ret`: callable, returning 0.

/// Machine code of every symbol: `xor eax, eax; ret; nop` (4 bytes, so each symbol is aligned).
const STUB: [u8; 4] = [0x31, 0xc0, 0xc3, 0x90];
/// Length of the instructions in [`STUB`], the symbol size.
const STUB_LEN: u64 = 3;

const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const SHDR_SIZE: usize = 64;
const SYM_SIZE: usize = 24;
const DYN_SIZE: usize = 16;
const PAGE: u64 = 0x1000;

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_GNU_STACK: u32 = 0x6474_e551;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;

const SHT_PROGBITS: u32 = 1;
const SHT_STRTAB: u32 = 3;
const SHT_HASH: u32 = 5;
const SHT_DYNAMIC: u32 = 6;
const SHT_DYNSYM: u32 = 11;
const SHF_WRITE: u64 = 1;
const SHF_ALLOC: u64 = 2;
const SHF_EXECINSTR: u64 = 4;

const DT_NULL: u64 = 0;
const DT_HASH: u64 = 4;
const DT_STRTAB: u64 = 5;
const DT_SYMTAB: u64 = 6;
const DT_STRSZ: u64 = 10;
const DT_SYMENT: u64 = 11;
const DT_SONAME: u64 = 14;

const STB_GLOBAL: u8 = 1;
const STT_FUNC: u8 = 2;

/// Section indexes, in the order the section header table lists them.
const SEC_DYNSYM: u16 = 2;
const SEC_DYNSTR: u16 = 3;
const SEC_TEXT: u16 = 4;
const SEC_SHSTRTAB: u16 = 6;
const SECTION_COUNT: u16 = 7;
const PHDR_COUNT: u16 = 4;

/// The System V ELF hash of a symbol name (the one DT_HASH tables use).
pub fn sysv_hash(name: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &b in name {
        h = (h << 4).wrapping_add(u32::from(b));
        let g = h & 0xf000_0000;
        if g != 0 {
            h ^= g >> 24;
        }
        h &= !g;
    }
    h
}

fn align(value: usize, to: usize) -> usize {
    value.div_ceil(to) * to
}

/// A little-endian byte buffer.
struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn pad_to(&mut self, len: usize) {
        assert!(self.0.len() <= len, "ELF layout overlaps");
        self.0.resize(len, 0);
    }
    #[allow(clippy::too_many_arguments)]
    fn phdr(
        &mut self,
        kind: u32,
        flags: u32,
        offset: u64,
        vaddr: u64,
        filesz: u64,
        memsz: u64,
        align: u64,
    ) {
        self.u32(kind);
        self.u32(flags);
        self.u64(offset);
        self.u64(vaddr);
        self.u64(vaddr);
        self.u64(filesz);
        self.u64(memsz);
        self.u64(align);
    }
    #[allow(clippy::too_many_arguments)]
    fn shdr(
        &mut self,
        name: u32,
        kind: u32,
        flags: u64,
        addr: u64,
        offset: u64,
        size: u64,
        link: u32,
        info: u32,
        align: u64,
        entsize: u64,
    ) {
        self.u32(name);
        self.u32(kind);
        self.u64(flags);
        self.u64(addr);
        self.u64(offset);
        self.u64(size);
        self.u32(link);
        self.u32(info);
        self.u64(align);
        self.u64(entsize);
    }
}

/// A string table under construction: offsets of the strings added so far.
struct StrTab(Vec<u8>);

impl StrTab {
    fn new() -> Self {
        StrTab(vec![0])
    }
    fn add(&mut self, s: &str) -> u32 {
        let at = self.0.len() as u32;
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
        at
    }
}

/// Build an x86-64 ELF shared object whose DT_SONAME is `soname` and which exports `symbols` as
/// functions returning 0. Pure: the same input always gives the same bytes.
///
/// # Panics
/// When a name holds a NUL byte (no ELF string can).
pub fn tiny_shared_object(soname: &str, symbols: &[&str]) -> Vec<u8> {
    assert!(
        !soname.contains('\0') && symbols.iter().all(|s| !s.contains('\0')),
        "ELF names cannot hold NUL"
    );

    let mut dynstr = StrTab::new();
    let soname_at = dynstr.add(soname);
    let sym_names: Vec<u32> = symbols.iter().map(|s| dynstr.add(s)).collect();
    let nsyms = symbols.len() + 1;
    let nbucket = symbols.len().max(1);

    // First segment: headers, then the allocated read-only sections and the code.
    let hash_off = EHDR_SIZE + PHDR_SIZE * usize::from(PHDR_COUNT);
    let hash_size = 4 * (2 + nbucket + nsyms);
    let dynsym_off = align(hash_off + hash_size, 8);
    let dynsym_size = SYM_SIZE * nsyms;
    let dynstr_off = dynsym_off + dynsym_size;
    let dynstr_size = dynstr.0.len();
    let text_off = align(dynstr_off + dynstr_size, 16);
    let text_size = STUB.len() * symbols.len().max(1);
    let seg1_end = text_off + text_size;

    // Second segment: the dynamic section, at an address on a later page but congruent to its
    // file offset modulo the page size, as the loader requires.
    let dyn_off = align(seg1_end, 8);
    let dyn_count = 7;
    let dyn_size = DYN_SIZE * dyn_count;
    let dyn_addr = align(seg1_end, PAGE as usize) as u64 + (dyn_off as u64 % PAGE);

    let mut shstr = StrTab::new();
    let sh_names = [
        shstr.add(".hash"),
        shstr.add(".dynsym"),
        shstr.add(".dynstr"),
        shstr.add(".text"),
        shstr.add(".dynamic"),
        shstr.add(".shstrtab"),
    ];
    let shstr_off = dyn_off + dyn_size;
    let shdr_off = align(shstr_off + shstr.0.len(), 8);

    let mut o = Out(Vec::with_capacity(
        shdr_off + SHDR_SIZE * usize::from(SECTION_COUNT),
    ));

    // ELF header.
    o.0.extend_from_slice(&[
        0x7f, b'E', b'L', b'F', 2, /* 64-bit */
        1, /* LE */
        1, /* version */
        0, /* SYSV */
    ]);
    o.0.extend_from_slice(&[0; 8]);
    o.u16(3); // ET_DYN
    o.u16(62); // EM_X86_64
    o.u32(1); // EV_CURRENT
    o.u64(0); // e_entry
    o.u64(EHDR_SIZE as u64); // e_phoff
    o.u64(shdr_off as u64); // e_shoff
    o.u32(0); // e_flags
    o.u16(EHDR_SIZE as u16);
    o.u16(PHDR_SIZE as u16);
    o.u16(PHDR_COUNT);
    o.u16(SHDR_SIZE as u16);
    o.u16(SECTION_COUNT);
    o.u16(SEC_SHSTRTAB);

    // Program headers.
    let seg1 = seg1_end as u64;
    o.phdr(PT_LOAD, PF_R | PF_X, 0, 0, seg1, seg1, PAGE);
    let dsz = dyn_size as u64;
    o.phdr(
        PT_LOAD,
        PF_R | PF_W,
        dyn_off as u64,
        dyn_addr,
        dsz,
        dsz,
        PAGE,
    );
    o.phdr(
        PT_DYNAMIC,
        PF_R | PF_W,
        dyn_off as u64,
        dyn_addr,
        dsz,
        dsz,
        8,
    );
    o.phdr(PT_GNU_STACK, PF_R | PF_W, 0, 0, 0, 0, 16);

    // .hash: nbucket, nchain, buckets, chains. Symbol i (1-based) goes into bucket hash % nbucket,
    // chained in front of the previous head.
    o.pad_to(hash_off);
    let mut buckets = vec![0u32; nbucket];
    let mut chains = vec![0u32; nsyms];
    for (i, name) in symbols.iter().enumerate() {
        let index = (i + 1) as u32;
        let b = (sysv_hash(name.as_bytes()) as usize) % nbucket;
        chains[index as usize] = buckets[b];
        buckets[b] = index;
    }
    o.u32(nbucket as u32);
    o.u32(nsyms as u32);
    buckets.iter().for_each(|&b| o.u32(b));
    chains.iter().for_each(|&c| o.u32(c));

    // .dynsym: the null symbol, then one global function per name.
    o.pad_to(dynsym_off);
    o.0.extend_from_slice(&[0; SYM_SIZE]);
    for (i, &name) in sym_names.iter().enumerate() {
        o.u32(name);
        o.u8((STB_GLOBAL << 4) | STT_FUNC);
        o.u8(0); // STV_DEFAULT
        o.u16(SEC_TEXT);
        o.u64((text_off + i * STUB.len()) as u64);
        o.u64(STUB_LEN);
    }

    // .dynstr and .text.
    o.pad_to(dynstr_off);
    o.0.extend_from_slice(&dynstr.0);
    o.pad_to(text_off);
    for _ in 0..symbols.len().max(1) {
        o.0.extend_from_slice(&STUB);
    }

    // .dynamic.
    o.pad_to(dyn_off);
    for (tag, val) in [
        (DT_SONAME, u64::from(soname_at)),
        (DT_HASH, hash_off as u64),
        (DT_STRTAB, dynstr_off as u64),
        (DT_SYMTAB, dynsym_off as u64),
        (DT_STRSZ, dynstr_size as u64),
        (DT_SYMENT, SYM_SIZE as u64),
        (DT_NULL, 0),
    ] {
        o.u64(tag);
        o.u64(val);
    }

    // .shstrtab and the section headers.
    o.pad_to(shstr_off);
    o.0.extend_from_slice(&shstr.0);
    o.pad_to(shdr_off);
    o.0.extend_from_slice(&[0; SHDR_SIZE]);
    let (h, s, d, t) = (
        hash_off as u64,
        dynsym_off as u64,
        dynstr_off as u64,
        text_off as u64,
    );
    o.shdr(
        sh_names[0],
        SHT_HASH,
        SHF_ALLOC,
        h,
        h,
        hash_size as u64,
        u32::from(SEC_DYNSYM),
        0,
        8,
        4,
    );
    let dynsym_size = dynsym_size as u64;
    o.shdr(
        sh_names[1],
        SHT_DYNSYM,
        SHF_ALLOC,
        s,
        s,
        dynsym_size,
        u32::from(SEC_DYNSTR),
        1,
        8,
        SYM_SIZE as u64,
    );
    o.shdr(
        sh_names[2],
        SHT_STRTAB,
        SHF_ALLOC,
        d,
        d,
        dynstr_size as u64,
        0,
        0,
        1,
        0,
    );
    o.shdr(
        sh_names[3],
        SHT_PROGBITS,
        SHF_ALLOC | SHF_EXECINSTR,
        t,
        t,
        text_size as u64,
        0,
        0,
        16,
        0,
    );
    let flags = SHF_ALLOC | SHF_WRITE;
    o.shdr(
        sh_names[4],
        SHT_DYNAMIC,
        flags,
        dyn_addr,
        dyn_off as u64,
        dsz,
        u32::from(SEC_DYNSTR),
        0,
        8,
        DYN_SIZE as u64,
    );
    o.shdr(
        sh_names[5],
        SHT_STRTAB,
        0,
        0,
        shstr_off as u64,
        shstr.0.len() as u64,
        0,
        0,
        1,
        0,
    );
    o.0
}

/// Read the DT_SONAME of a 64-bit little-endian ELF file (any producer, not only ours): follow
/// PT_DYNAMIC to DT_STRTAB and DT_SONAME, mapping addresses back to file offsets through the
/// PT_LOAD headers. `None` when the bytes are not such a file or have no soname.
pub fn read_soname(elf: &[u8]) -> Option<String> {
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        elf.get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    };
    let u64_at = |at: usize| {
        elf.get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    };
    if elf.get(..6)? != [0x7f, b'E', b'L', b'F', 2, 1] {
        return None;
    }
    let phoff = usize::try_from(u64_at(32)?).ok()?;
    let phentsize = usize::from(u16_at(54)?);
    let phnum = usize::from(u16_at(56)?);
    let mut loads = Vec::new();
    let mut dynamic = None;
    for i in 0..phnum {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        let (kind, offset, vaddr, filesz) = (
            u32_at(ph)?,
            u64_at(ph + 8)?,
            u64_at(ph + 16)?,
            u64_at(ph + 32)?,
        );
        match kind {
            PT_LOAD => loads.push((vaddr, offset, filesz)),
            PT_DYNAMIC => dynamic = Some((offset, filesz)),
            _ => {}
        }
    }
    let to_offset = |addr: u64| {
        loads
            .iter()
            .find(|(vaddr, _, filesz)| addr >= *vaddr && addr < vaddr + filesz)
            .and_then(|(vaddr, offset, _)| usize::try_from(addr - vaddr + offset).ok())
    };
    let (dyn_off, dyn_size) = dynamic?;
    let (mut strtab, mut soname) = (None, None);
    let mut at = usize::try_from(dyn_off).ok()?;
    let end = at.checked_add(usize::try_from(dyn_size).ok()?)?;
    while at + 16 <= end {
        let (tag, val) = (u64_at(at)?, u64_at(at + 8)?);
        match tag {
            DT_NULL => break,
            DT_STRTAB => strtab = Some(val),
            DT_SONAME => soname = Some(val),
            _ => {}
        }
        at += 16;
    }
    let start = to_offset(strtab?)?.checked_add(usize::try_from(soname?).ok()?)?;
    let bytes = elf.get(start..)?;
    let len = bytes.iter().position(|&b| b == 0)?;
    String::from_utf8(bytes[..len].to_vec()).ok()
}

#[cfg(test)]
mod tests {
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
}
