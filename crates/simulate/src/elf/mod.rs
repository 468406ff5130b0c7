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

/// Where everything of one object goes: file offsets, sizes and the dynamic section's address.
struct Layout {
    nsyms: usize,
    nbucket: usize,
    hash_off: usize,
    hash_size: usize,
    dynsym_off: usize,
    dynsym_size: usize,
    dynstr_off: usize,
    dynstr_size: usize,
    text_off: usize,
    text_size: usize,
    seg1_end: usize,
    dyn_off: usize,
    dyn_size: usize,
    dyn_addr: u64,
    shstr_off: usize,
    shdr_off: usize,
}

impl Layout {
    fn new(nsymbols: usize, dynstr_size: usize, shstr_size: usize) -> Layout {
        let nsyms = nsymbols + 1;
        let nbucket = nsymbols.max(1);
        // First segment: headers, then the allocated read-only sections and the code.
        let hash_off = EHDR_SIZE + PHDR_SIZE * usize::from(PHDR_COUNT);
        let hash_size = 4 * (2 + nbucket + nsyms);
        let dynsym_off = align(hash_off + hash_size, 8);
        let dynsym_size = SYM_SIZE * nsyms;
        let dynstr_off = dynsym_off + dynsym_size;
        let text_off = align(dynstr_off + dynstr_size, 16);
        let text_size = STUB.len() * nsymbols.max(1);
        let seg1_end = text_off + text_size;
        // Second segment: the dynamic section, at an address on a later page but congruent to
        // its file offset modulo the page size, as the loader requires.
        let dyn_off = align(seg1_end, 8);
        let dyn_size = DYN_SIZE * DYN_COUNT;
        let dyn_addr = align(seg1_end, PAGE as usize) as u64 + (dyn_off as u64 % PAGE);
        let shstr_off = dyn_off + dyn_size;
        let shdr_off = align(shstr_off + shstr_size, 8);
        Layout {
            nsyms,
            nbucket,
            hash_off,
            hash_size,
            dynsym_off,
            dynsym_size,
            dynstr_off,
            dynstr_size,
            text_off,
            text_size,
            seg1_end,
            dyn_off,
            dyn_size,
            dyn_addr,
            shstr_off,
            shdr_off,
        }
    }
}

/// Entries of the dynamic section.
const DYN_COUNT: usize = 7;

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

    let mut shstr = StrTab::new();
    let sh_names = [
        shstr.add(".hash"),
        shstr.add(".dynsym"),
        shstr.add(".dynstr"),
        shstr.add(".text"),
        shstr.add(".dynamic"),
        shstr.add(".shstrtab"),
    ];
    let l = Layout::new(symbols.len(), dynstr.0.len(), shstr.0.len());

    let mut o = Out(Vec::with_capacity(
        l.shdr_off + SHDR_SIZE * usize::from(SECTION_COUNT),
    ));
    elf_header(&mut o, &l);
    program_headers(&mut o, &l);
    hash_table(&mut o, &l, symbols);

    // .dynsym: the null symbol, then one global function per name.
    o.pad_to(l.dynsym_off);
    o.0.extend_from_slice(&[0; SYM_SIZE]);
    for (i, &name) in sym_names.iter().enumerate() {
        o.u32(name);
        o.u8((STB_GLOBAL << 4) | STT_FUNC);
        o.u8(0); // STV_DEFAULT
        o.u16(SEC_TEXT);
        o.u64((l.text_off + i * STUB.len()) as u64);
        o.u64(STUB_LEN);
    }

    // .dynstr and .text.
    o.pad_to(l.dynstr_off);
    o.0.extend_from_slice(&dynstr.0);
    o.pad_to(l.text_off);
    for _ in 0..symbols.len().max(1) {
        o.0.extend_from_slice(&STUB);
    }

    // .dynamic.
    o.pad_to(l.dyn_off);
    for (tag, val) in [
        (DT_SONAME, u64::from(soname_at)),
        (DT_HASH, l.hash_off as u64),
        (DT_STRTAB, l.dynstr_off as u64),
        (DT_SYMTAB, l.dynsym_off as u64),
        (DT_STRSZ, l.dynstr_size as u64),
        (DT_SYMENT, SYM_SIZE as u64),
        (DT_NULL, 0),
    ] {
        o.u64(tag);
        o.u64(val);
    }

    // .shstrtab and the section headers.
    o.pad_to(l.shstr_off);
    o.0.extend_from_slice(&shstr.0);
    section_headers(&mut o, &l, &sh_names, shstr.0.len());
    o.0
}

/// The ELF header.
fn elf_header(o: &mut Out, l: &Layout) {
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
    o.u64(l.shdr_off as u64); // e_shoff
    o.u32(0); // e_flags
    o.u16(EHDR_SIZE as u16);
    o.u16(PHDR_SIZE as u16);
    o.u16(PHDR_COUNT);
    o.u16(SHDR_SIZE as u16);
    o.u16(SECTION_COUNT);
    o.u16(SEC_SHSTRTAB);
}

/// The program headers: the two PT_LOAD segments, PT_DYNAMIC and PT_GNU_STACK.
fn program_headers(o: &mut Out, l: &Layout) {
    let seg1 = l.seg1_end as u64;
    o.phdr(PT_LOAD, PF_R | PF_X, 0, 0, seg1, seg1, PAGE);
    let dsz = l.dyn_size as u64;
    let doff = l.dyn_off as u64;
    o.phdr(PT_LOAD, PF_R | PF_W, doff, l.dyn_addr, dsz, dsz, PAGE);
    o.phdr(PT_DYNAMIC, PF_R | PF_W, doff, l.dyn_addr, dsz, dsz, 8);
    o.phdr(PT_GNU_STACK, PF_R | PF_W, 0, 0, 0, 0, 16);
}

/// .hash: nbucket, nchain, buckets, chains. Symbol i (1-based) goes into bucket hash % nbucket,
/// chained in front of the previous head.
fn hash_table(o: &mut Out, l: &Layout, symbols: &[&str]) {
    o.pad_to(l.hash_off);
    let mut buckets = vec![0u32; l.nbucket];
    let mut chains = vec![0u32; l.nsyms];
    for (i, name) in symbols.iter().enumerate() {
        let index = (i + 1) as u32;
        let b = (sysv_hash(name.as_bytes()) as usize) % l.nbucket;
        chains[index as usize] = buckets[b];
        buckets[b] = index;
    }
    o.u32(l.nbucket as u32);
    o.u32(l.nsyms as u32);
    buckets.iter().for_each(|&b| o.u32(b));
    chains.iter().for_each(|&c| o.u32(c));
}

/// The section header table: the null section, then one header per section.
fn section_headers(o: &mut Out, l: &Layout, sh_names: &[u32; 6], shstr_size: usize) {
    o.pad_to(l.shdr_off);
    o.0.extend_from_slice(&[0; SHDR_SIZE]);
    let (h, s, d, t) = (
        l.hash_off as u64,
        l.dynsym_off as u64,
        l.dynstr_off as u64,
        l.text_off as u64,
    );
    let dynsym = u32::from(SEC_DYNSYM);
    let dynstr = u32::from(SEC_DYNSTR);
    let alloc = SHF_ALLOC;
    let hash_size = l.hash_size as u64;
    o.shdr(
        sh_names[0],
        SHT_HASH,
        alloc,
        h,
        h,
        hash_size,
        dynsym,
        0,
        8,
        4,
    );
    let (dynsym_size, sym_size) = (l.dynsym_size as u64, SYM_SIZE as u64);
    o.shdr(
        sh_names[1],
        SHT_DYNSYM,
        alloc,
        s,
        s,
        dynsym_size,
        dynstr,
        1,
        8,
        sym_size,
    );
    let dynstr_size = l.dynstr_size as u64;
    o.shdr(
        sh_names[2],
        SHT_STRTAB,
        alloc,
        d,
        d,
        dynstr_size,
        0,
        0,
        1,
        0,
    );
    let code = SHF_ALLOC | SHF_EXECINSTR;
    o.shdr(
        sh_names[3],
        SHT_PROGBITS,
        code,
        t,
        t,
        l.text_size as u64,
        0,
        0,
        16,
        0,
    );
    let (flags, dsz, dyn_size) = (SHF_ALLOC | SHF_WRITE, l.dyn_size as u64, DYN_SIZE as u64);
    let (addr, off) = (l.dyn_addr, l.dyn_off as u64);
    o.shdr(
        sh_names[4],
        SHT_DYNAMIC,
        flags,
        addr,
        off,
        dsz,
        dynstr,
        0,
        8,
        dyn_size,
    );
    let (shstr_off, shstr_size) = (l.shstr_off as u64, shstr_size as u64);
    o.shdr(
        sh_names[5],
        SHT_STRTAB,
        0,
        0,
        shstr_off,
        shstr_size,
        0,
        0,
        1,
        0,
    );
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
mod tests;
