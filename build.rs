//! Link GCC's unwinder statically (`libgcc_eh.a`, what `gcc -static-libgcc` links) instead of
//! loading `libgcc_s.so.1` at every start.
//!
//! Rust's standard library needs an unwinder (panics, backtraces); on `*-linux-gnu` it names the
//! shared `libgcc_s`. Loading it costs every migcage process about 130 µs on a VM (its mappings,
//! and its constructor's `cpuid` instructions, each a trap to the hypervisor), and the hook and
//! the runtime wrapper run once or more per container start (#18; `scripts/bench.sh`). With the
//! archive named first, the linker (`--as-needed`, which rustc passes) finds every `_Unwind_*`
//! symbol in it and records no `libgcc_s.so.1` dependency. glibc stays shared: NVML is loaded
//! with `dlopen`, which needs the shared libc.
//!
//! Where the archive is not found (another C toolchain), nothing changes but a warning; fuzz
//! builds (libFuzzer's C++ runtime brings libgcc_s itself) keep the default.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let linux_gnu = var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu";
    let crt_static = var("CARGO_CFG_TARGET_FEATURE")
        .split(',')
        .any(|f| f == "crt-static");
    let fuzzing = std::env::var_os("CARGO_CFG_FUZZING").is_some();
    if !linux_gnu || crt_static || fuzzing {
        return;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let found = Command::new(&cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match found.as_deref().map(Path::new) {
        Some(archive) if archive.is_absolute() && archive.is_file() => {
            let dir = archive.parent().expect("an absolute file path has a parent");
            println!("cargo:rustc-link-search=native={}", dir.display());
            println!("cargo:rustc-link-lib=static:-bundle,+verbatim=libgcc_eh.a");
        }
        _ => println!(
            "cargo:warning=libgcc_eh.a not found by `{cc} -print-file-name`: migcage links libgcc_s.so.1 (about 130 us more per process start)"
        ),
    }
}
