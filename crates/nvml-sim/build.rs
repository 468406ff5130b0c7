//! Give the cdylib the soname of the library it stands in for, so the dynamic linker, ldconfig
//! and `dlopen("libnvidia-ml.so.1")` treat it as NVML.

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libnvidia-ml.so.1");
    println!("cargo:rerun-if-changed=build.rs");
}
