//! The NVIDIA driver's user-space files, as data.
//!
//! This table is the one place that says which files a driver installation consists of (libraries,
//! binaries, firmware, configuration files, IPC sockets), where they live on a host and which
//! `NVIDIA_DRIVER_CAPABILITIES` each one belongs to. `migcage simulate` writes every entry into a
//! fake driver tree; discovery on a real host and the capability-to-file mapping read the same
//! table, so the simulated tree and the real one can never disagree on names.
//!
//! Sources of the facts: libnvidia-container's `src/nvc_info.c` (the per-capability library and
//! binary lists, the firmware glob `/lib/firmware/nvidia/<version>/gsp*.bin`, the IPC paths), its
//! `src/nvc_mount.c` (persistenced and fabric manager sockets go with `utility`, the MPS pipe
//! directory with `compute`; firmware is mounted whatever was asked), and the sonames of an
//! installed 550-series driver.
//!
//! Names may contain `{ver}`, which stands for the full driver version (`550.54.15`); use
//! [`driver_files`] to get them filled in. That function is also where a future difference between
//! driver branches goes: today no entry depends on the branch.
//!
//! Its own crate because both migcage (discovery, the plan) and its simulator (`migcage-simulate`,
//! which must not depend on migcage) read it; migcage code names it `migcage::core::driver_files`.

mod caps;
mod table;

pub use caps::{Capability, Caps};
pub use table::{DriverFileEntry, FileKind, DRIVER_FILES};

/// Where libraries live on a Debian-style x86-64 host.
pub const LIBRARY_DIR: &str = "/usr/lib/x86_64-linux-gnu";
/// Where 32-bit libraries live on a Debian-style host.
pub const LIBRARY_DIR_32: &str = "/usr/lib/i386-linux-gnu";
/// Where binaries live on a host.
pub const BINARY_DIR: &str = "/usr/bin";

/// Where discovery looks for a 64-bit library the ld cache does not list (or lists at another
/// version), in order: Debian multiarch, then the RPM-style and plain directories.
pub const LIBRARY_DIRS: &[&str] = &[
    LIBRARY_DIR,
    "/lib/x86_64-linux-gnu",
    "/usr/lib64",
    "/lib64",
    "/usr/lib",
    "/lib",
];
/// The same for 32-bit libraries (`compat32`). The ELF class is checked, so a 64-bit file in a
/// shared directory such as `/usr/lib` is never taken for a 32-bit one.
pub const LIBRARY_DIRS_32: &[&str] = &[
    LIBRARY_DIR_32,
    "/lib/i386-linux-gnu",
    "/usr/lib32",
    "/lib32",
    "/usr/lib",
];
/// Where discovery looks for the driver's binaries, in order.
pub const BINARY_DIRS: &[&str] = &[BINARY_DIR, "/usr/sbin", "/bin", "/sbin", "/usr/local/bin"];

/// IPC entries a container may write into (the MPS pipe directory, where clients open the
/// daemon's pipes for writing). Every other entry is mounted read-only.
pub const WRITABLE_IPC: &[&str] = &["/tmp/nvidia-mps"];

/// Libraries that also get the unversioned development symlink (`libcuda.so -> libcuda.so.1`),
/// on a host (the driver's installer makes it) and in a container (migcage makes it).
pub const DEV_SYMLINKS: &[&str] = &["libcuda.so.1", "libnvidia-ml.so.1"];

/// The development symlink's name for `soname` (`libcuda.so` for `libcuda.so.1`), when it is one
/// of [`DEV_SYMLINKS`].
pub fn dev_link_name(soname: &str) -> Option<String> {
    if !DEV_SYMLINKS.contains(&soname) {
        return None;
    }
    soname
        .rsplit_once(".so.")
        .map(|(stem, _)| format!("{stem}.so"))
}

/// **Simulated hosts only.** A file that `migcage simulate` writes into its tree for containers,
/// with no counterpart in a real driver installation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimOnlyFile {
    /// Where the simulated tree holds it (relative to the driver root, written as absolute).
    pub host_path: &'static str,
    /// Its name in the container, in the directory of the library named by `beside`.
    pub container_name: &'static str,
    /// The soname of the library it goes next to.
    pub beside: &'static str,
    pub caps: Caps,
}

/// **Simulated hosts only.** Discovery looks for these only when the configuration says the
/// driver root is a simulated tree (`simulated_driver = true`, which only the config that
/// `migcage simulate` writes sets), so a real host never gets them.
///
/// The simulated NVML reads its topology from `nvidia-sim-topology.toml` next to itself. The
/// host's copy shows every device; the container's copy (`visibility = "device-nodes"`,
/// `dev_root = "/dev"`) makes the library inside a container enumerate only the devices whose
/// nodes the container can open, which is the real driver's rule.
pub const SIM_ONLY_FILES: &[SimOnlyFile] = &[SimOnlyFile {
    host_path: "/usr/share/migcage-sim/nvidia-sim-topology.container.toml",
    container_name: "nvidia-sim-topology.toml",
    beside: "libnvidia-ml.so.1",
    caps: Caps::UTILITY,
}];

/// One of the driver's files for one driver version: every `{ver}` filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverFile {
    pub kind: FileKind,
    /// As [`DriverFileEntry::name`], with the version filled in.
    pub name: String,
    pub soname: Option<String>,
    pub subdir: Option<&'static str>,
    pub caps: Caps,
    pub examples: &'static [&'static str],
}

impl DriverFile {
    /// The absolute path of the file on a host: libraries under [`LIBRARY_DIR`], binaries under
    /// [`BINARY_DIR`], the others as the table gives them (possibly a glob).
    pub fn host_path(&self) -> String {
        match self.kind {
            FileKind::Library => match self.subdir {
                Some(sub) => format!("{LIBRARY_DIR}/{sub}/{}", self.name),
                None => format!("{LIBRARY_DIR}/{}", self.name),
            },
            FileKind::Binary => format!("{BINARY_DIR}/{}", self.name),
            _ => self.name.clone(),
        }
    }

    /// Whether `name` is a glob (holds `*`).
    pub fn is_pattern(&self) -> bool {
        self.name.contains('*')
    }
}

/// The driver's files for `driver_version` (`550.54.15`), in table order.
pub fn driver_files(driver_version: &str) -> Vec<DriverFile> {
    let fill = |s: &str| s.replace("{ver}", driver_version);
    DRIVER_FILES
        .iter()
        .map(|e| DriverFile {
            kind: e.kind,
            name: fill(e.name),
            soname: e.soname.map(fill),
            subdir: e.subdir,
            caps: e.caps,
            examples: e.examples,
        })
        .collect()
}

/// The driver's files that belong to at least one of `wanted`.
pub fn files_for(driver_version: &str, wanted: Caps) -> Vec<DriverFile> {
    driver_files(driver_version)
        .into_iter()
        .filter(|f| f.caps.intersects(wanted))
        .collect()
}

#[cfg(test)]
mod tests;
