//! Pieces of the driver-injection end-to-end tests: a rootfs with the host's glibc (the injected
//! simulated NVML, nvidia-smi and the test's own dlopen program are dynamically linked), the
//! dlopen program, the probe that lists what the container got, and the host's ldconfig as an
//! independent reader of the container's ld cache.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::{Bundle, Run};

/// The directory the driver's libraries are injected into (as on a Debian host).
pub const LIB: &str = "/usr/lib/x86_64-linux-gnu";

/// A C program that dlopens the driver's libraries by soname (no LD_LIBRARY_PATH: the
/// container's ld cache must find them) and calls one function of each.
const DLPROBE_C: &str = r#"
#include <dlfcn.h>
#include <stdio.h>
int main(void) {
    int failed = 0;
    void *cuda = dlopen("libcuda.so.1", RTLD_NOW);
    if (!cuda) { printf("DLOPEN libcuda.so.1 FAIL %s\n", dlerror()); failed = 1; }
    else {
        int (*cu_init)(unsigned) = (int (*)(unsigned))dlsym(cuda, "cuInit");
        printf("DLOPEN libcuda.so.1 OK cuInit=%d\n", cu_init ? cu_init(0) : -1);
    }
    void *nvml = dlopen("libnvidia-ml.so.1", RTLD_NOW);
    if (!nvml) { printf("DLOPEN libnvidia-ml.so.1 FAIL %s\n", dlerror()); failed = 1; }
    else {
        int (*init)(void) = (int (*)(void))dlsym(nvml, "nvmlInit_v2");
        int (*count)(unsigned *) = (int (*)(unsigned *))dlsym(nvml, "nvmlDeviceGetCount_v2");
        unsigned n = 0;
        int r = init ? init() : -1;
        int c = (r == 0 && count) ? count(&n) : -1;
        printf("DLOPEN libnvidia-ml.so.1 OK init=%d count=%d:%u\n", r, c, n);
    }
    fflush(stdout);
    return failed;
}
"#;

/// The environment variable naming a dlopen program built beforehand (the systemd VM has no C
/// compiler: tests/vm.rs builds it here with [`build_dlprobe`]).
pub const DLPROBE_ENV: &str = "MIGCAGE_TEST_DLPROBE";

/// The dlopen program: `$MIGCAGE_TEST_DLPROBE`, or built once per test process with the
/// system's C compiler, in cargo's scratch directory for integration tests (under the target
/// directory, not the host's /tmp).
pub fn dlprobe() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if let Some(p) = std::env::var_os(DLPROBE_ENV).filter(|p| !p.is_empty()) {
                return PathBuf::from(p);
            }
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("migcage-dlprobe-{}", std::process::id()));
            build_dlprobe(&dir)
        })
        .clone()
}

/// Build the dlopen program in `dir` with the system's C compiler; its path.
pub fn build_dlprobe(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let src = dir.join("dlprobe.c");
    std::fs::write(&src, DLPROBE_C).unwrap();
    let out = dir.join("dlprobe");
    let st = Command::new("cc")
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .expect("cc (scripts/deps.sh installs gcc)");
    assert!(st.success(), "cc dlprobe.c failed");
    out
}

/// The shared objects `program` needs, as `ldd` names them (absolute paths).
fn needed(program: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(program).output().unwrap();
    assert!(out.status.success(), "ldd {}", program.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// Copy the host's glibc pieces `programs` need into `rootfs`, at the paths `ldd` names, as real
/// files in real directories (the rootfs does not merge /lib into /usr/lib, so the injected
/// driver libraries are alone in [`LIB`]), plus busybox applets the probes use.
pub fn add_glibc(rootfs: &Path, programs: &[&Path]) {
    let mut libs = BTreeSet::new();
    for p in programs {
        libs.extend(needed(p));
    }
    for lib in libs {
        let dest = rootfs.join(lib.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(std::fs::canonicalize(&lib).unwrap(), &dest).unwrap();
    }
    for applet in ["readlink", "awk", "wc", "head", "cut", "tr", "env"] {
        let link = rootfs.join("bin").join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", link).unwrap();
        }
    }
}

/// Prepare `bundle`'s rootfs: glibc for the driver's programs (from the simulated tree at
/// `sim`) and the dlopen probe at /dlprobe; then, when `image_cache`, an ld cache of its own made
/// by the host's ldconfig (as an image would ship one), which the hook must keep.
pub fn prepare(bundle: &Bundle, sim: &Path, image_cache: bool) {
    let rootfs = bundle.path().join("rootfs");
    let probe = dlprobe();
    let smi = sim.join("usr/bin/nvidia-smi");
    let nvml = sim.join(format!("{LIB}/libnvidia-ml.so.1").trim_start_matches('/'));
    add_glibc(&rootfs, &[&probe, &smi, &nvml]);
    std::fs::copy(&probe, rootfs.join("dlprobe")).unwrap();
    if image_cache {
        // As a Debian image has them: ld.so.conf including ld.so.conf.d.
        std::fs::create_dir_all(rootfs.join("etc/ld.so.conf.d")).unwrap();
        std::fs::write(
            rootfs.join("etc/ld.so.conf"),
            "include /etc/ld.so.conf.d/*.conf\n",
        )
        .unwrap();
        let out = Command::new(host_ldconfig())
            .arg("-r")
            .arg(&rootfs)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ldconfig -r: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

pub fn host_ldconfig() -> PathBuf {
    ["/sbin/ldconfig", "/usr/sbin/ldconfig"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("ldconfig (Debian: libc-bin)")
}

/// `(soname, arch, path)` of every entry of the cache `file`, as the host's ldconfig (glibc's own
/// reader, run on the host on a file: it executes nothing of the image) lists it.
pub fn ld_cache_entries(file: &Path) -> BTreeSet<(String, String, String)> {
    let out = Command::new(host_ldconfig())
        .arg("-C")
        .arg(file)
        .arg("-p")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ldconfig -C {} -p: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('\t'))
        .map(|l| {
            let (left, path) = l.trim().split_once(" => ").unwrap();
            let (name, arch) = left.split_once(" (").unwrap();
            (
                name.to_string(),
                arch.trim_end_matches(')').to_string(),
                path.to_string(),
            )
        })
        .collect()
}

/// The probe: every file and symlink where driver files go, the mount table, the dlopen program
/// (with the dynamic linker's trace of how it found each library), and `nvidia-smi -L`.
pub const DRIVER_PROBE: &str = r#"
for f in /usr/lib/x86_64-linux-gnu/* /usr/lib/x86_64-linux-gnu/vdpau/* /usr/bin/* /lib/firmware/nvidia/*/* /usr/share/vulkan/icd.d/* /usr/share/glvnd/egl_vendor.d/* /usr/share/egl/egl_external_platform.d/*; do
  if [ -L "$f" ]; then echo "LINK $f $(readlink "$f")"; elif [ -f "$f" ]; then echo "FILE $f"; fi
done
awk '{print "MOUNT " $5 " " $6}' /proc/self/mountinfo
LD_DEBUG=libs /dlprobe 2>&1 | sed 's/^/DL /'
if [ -x /usr/bin/nvidia-smi ]; then out=$(/usr/bin/nvidia-smi -L 2>&1); rc=$?; echo "$out" | sed 's/^/SMI /'; echo "SMI-EXIT $rc"; fi
echo PROBE-DONE
"#;

/// What the probe saw.
pub struct Seen {
    /// Regular files (the mounted driver files).
    pub files: BTreeSet<String>,
    /// Symlinks -> targets.
    pub links: BTreeMap<String, String>,
    /// Mount point -> options.
    pub mounts: BTreeMap<String, String>,
    /// The dlopen program's and the dynamic linker's lines.
    pub dl: Vec<String>,
    /// `nvidia-smi -L` lines.
    pub smi: Vec<String>,
}

pub fn seen(run: &Run) -> Seen {
    let mut s = Seen {
        files: BTreeSet::new(),
        links: BTreeMap::new(),
        mounts: BTreeMap::new(),
        dl: run.prefixed("DL "),
        smi: run.prefixed("SMI "),
    };
    for l in run.prefixed("FILE ") {
        s.files.insert(l);
    }
    for l in run.prefixed("LINK ") {
        let (link, target) = l.split_once(' ').unwrap();
        s.links.insert(link.to_string(), target.to_string());
    }
    for l in run.prefixed("MOUNT ") {
        let (mp, opts) = l.split_once(' ').unwrap();
        s.mounts.insert(mp.to_string(), opts.to_string());
    }
    s
}

impl Seen {
    /// Whether the dynamic linker found `soname` through the ld cache: its `find library` is
    /// followed by `search cache` and a `trying file` in the cache's directory, with no search of
    /// the default path in between.
    pub fn found_through_cache(&self, soname: &str, dir: &str) -> bool {
        let mut it = self
            .dl
            .iter()
            .skip_while(|l| !l.contains(&format!("find library={soname} ")));
        if it.next().is_none() {
            return false;
        }
        for l in it {
            if l.contains("search path=") || l.contains("find library=") {
                return false;
            }
            if l.contains("trying file=") {
                return l.contains(&format!("trying file={dir}/{soname}"));
            }
        }
        false
    }
}
