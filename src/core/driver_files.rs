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

use std::fmt;

use serde::Serialize;

/// One `NVIDIA_DRIVER_CAPABILITIES` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    Compute,
    Utility,
    Video,
    Graphics,
    Display,
    Ngx,
    /// The 32-bit builds of the libraries of the other capabilities (libnvidia-container looks the
    /// same names up again in the ld cache for the 32-bit architecture).
    Compat32,
}

impl Capability {
    /// Every capability (`NVIDIA_DRIVER_CAPABILITIES=all`), in alphabetical order.
    pub const ALL: [Capability; 7] = [
        Capability::Compute,
        Capability::Compat32,
        Capability::Display,
        Capability::Graphics,
        Capability::Ngx,
        Capability::Utility,
        Capability::Video,
    ];

    /// The name as `NVIDIA_DRIVER_CAPABILITIES` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Compute => "compute",
            Capability::Utility => "utility",
            Capability::Video => "video",
            Capability::Graphics => "graphics",
            Capability::Display => "display",
            Capability::Ngx => "ngx",
            Capability::Compat32 => "compat32",
        }
    }

    /// Parse one capability name (exact, lower case).
    pub fn from_name(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.name() == name)
    }

    fn bit(self) -> u8 {
        match self {
            Capability::Compute => 1,
            Capability::Utility => 1 << 1,
            Capability::Video => 1 << 2,
            Capability::Graphics => 1 << 3,
            Capability::Display => 1 << 4,
            Capability::Ngx => 1 << 5,
            Capability::Compat32 => 1 << 6,
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of capabilities: the ones a file belongs to, or the ones a container asked for.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Caps(u8);

impl Caps {
    pub const NONE: Caps = Caps(0);
    pub const COMPUTE: Caps = Caps(1);
    pub const UTILITY: Caps = Caps(1 << 1);
    pub const VIDEO: Caps = Caps(1 << 2);
    pub const GRAPHICS: Caps = Caps(1 << 3);
    pub const DISPLAY: Caps = Caps(1 << 4);
    pub const NGX: Caps = Caps(1 << 5);
    pub const COMPAT32: Caps = Caps(1 << 6);
    /// Every capability: a file that goes with any request at all (firmware).
    pub const ANY: Caps = Caps(0x7f);

    /// The union of two sets (usable in constants).
    pub const fn or(self, other: Caps) -> Caps {
        Caps(self.0 | other.0)
    }

    pub fn contains(self, cap: Capability) -> bool {
        self.0 & cap.bit() != 0
    }

    /// Whether the two sets share a capability.
    pub fn intersects(self, other: Caps) -> bool {
        self.0 & other.0 != 0
    }

    pub fn insert(&mut self, cap: Capability) {
        self.0 |= cap.bit();
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The capabilities in the set, in [`Capability::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Capability> {
        Capability::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }
}

impl FromIterator<Capability> for Caps {
    fn from_iter<I: IntoIterator<Item = Capability>>(iter: I) -> Self {
        let mut caps = Caps::NONE;
        for c in iter {
            caps.insert(c);
        }
        caps
    }
}

impl Serialize for Caps {
    /// The capability names, as `NVIDIA_DRIVER_CAPABILITIES` spells them.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let names: Vec<&str> = self.iter().map(Capability::name).collect();
        names.serialize(s)
    }
}

impl fmt::Debug for Caps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Capability::name).collect();
        write!(f, "Caps({})", names.join(","))
    }
}

/// What kind of file an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    /// A shared library in the host's library directory, found through the ld cache.
    Library,
    /// An executable found in `PATH` (`/usr/bin` on a host).
    Binary,
    /// GSP firmware under `/lib/firmware/nvidia/<version>/`.
    Firmware,
    /// A configuration file (ICD and vendor JSON files).
    ConfigFile,
    /// A socket or pipe directory a daemon creates while it runs.
    IpcSocket,
}

/// One of the driver's files, as a template (names may hold `{ver}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverFileEntry {
    pub kind: FileKind,
    /// Libraries and binaries: the file name (`libcuda.so.{ver}`, `nvidia-smi`). Firmware,
    /// configuration files and sockets: the absolute path on a host, which may end in a glob
    /// (`/usr/share/egl/egl_external_platform.d/*nvidia*.json`).
    pub name: &'static str,
    /// A library's DT_SONAME (`libcuda.so.1`), which the ld cache and the soname symlink use.
    pub soname: Option<&'static str>,
    /// Libraries only: a directory below the library directory that holds it (`vdpau`).
    pub subdir: Option<&'static str>,
    /// The capabilities the file belongs to.
    pub caps: Caps,
    /// For a `name` that is a glob: the file names a driver installs that match it, used where a
    /// concrete file is needed (the simulator).
    pub examples: &'static [&'static str],
}

const fn lib(name: &'static str, soname: &'static str, caps: Caps) -> DriverFileEntry {
    DriverFileEntry {
        kind: FileKind::Library,
        name,
        soname: Some(soname),
        subdir: None,
        caps,
        examples: &[],
    }
}

const fn file(kind: FileKind, name: &'static str, caps: Caps) -> DriverFileEntry {
    DriverFileEntry {
        kind,
        name,
        soname: None,
        subdir: None,
        caps,
        examples: &[],
    }
}

const GRAPHICS_DISPLAY: Caps = Caps::GRAPHICS.or(Caps::DISPLAY);

/// The driver's user-space files.
pub const DRIVER_FILES: &[DriverFileEntry] = &[
    // utility
    lib("libnvidia-ml.so.{ver}", "libnvidia-ml.so.1", Caps::UTILITY),
    lib(
        "libnvidia-cfg.so.{ver}",
        "libnvidia-cfg.so.1",
        Caps::UTILITY,
    ),
    // compute
    lib("libcuda.so.{ver}", "libcuda.so.1", Caps::COMPUTE),
    lib(
        "libcudadebugger.so.{ver}",
        "libcudadebugger.so.1",
        Caps::COMPUTE,
    ),
    lib(
        "libnvidia-opencl.so.{ver}",
        "libnvidia-opencl.so.1",
        Caps::COMPUTE,
    ),
    lib(
        "libnvidia-gpucomp.so.{ver}",
        "libnvidia-gpucomp.so.{ver}",
        Caps::COMPUTE,
    ),
    lib(
        "libnvidia-ptxjitcompiler.so.{ver}",
        "libnvidia-ptxjitcompiler.so.1",
        Caps::COMPUTE,
    ),
    lib(
        "libnvidia-allocator.so.{ver}",
        "libnvidia-allocator.so.1",
        Caps::COMPUTE,
    ),
    lib(
        "libnvidia-nvvm.so.{ver}",
        "libnvidia-nvvm.so.4",
        Caps::COMPUTE,
    ),
    // video
    DriverFileEntry {
        subdir: Some("vdpau"),
        ..lib(
            "libvdpau_nvidia.so.{ver}",
            "libvdpau_nvidia.so.1",
            Caps::VIDEO,
        )
    },
    lib(
        "libnvidia-encode.so.{ver}",
        "libnvidia-encode.so.1",
        Caps::VIDEO,
    ),
    lib(
        "libnvidia-opticalflow.so.{ver}",
        "libnvidia-opticalflow.so.1",
        Caps::VIDEO,
    ),
    lib("libnvcuvid.so.{ver}", "libnvcuvid.so.1", Caps::VIDEO),
    // graphics
    lib(
        "libnvidia-eglcore.so.{ver}",
        "libnvidia-eglcore.so.{ver}",
        Caps::GRAPHICS,
    ),
    lib(
        "libnvidia-glcore.so.{ver}",
        "libnvidia-glcore.so.{ver}",
        Caps::GRAPHICS,
    ),
    lib(
        "libnvidia-tls.so.{ver}",
        "libnvidia-tls.so.{ver}",
        Caps::GRAPHICS,
    ),
    lib(
        "libnvidia-glsi.so.{ver}",
        "libnvidia-glsi.so.{ver}",
        Caps::GRAPHICS,
    ),
    lib(
        "libnvidia-fbc.so.{ver}",
        "libnvidia-fbc.so.1",
        Caps::GRAPHICS,
    ),
    lib(
        "libnvidia-rtcore.so.{ver}",
        "libnvidia-rtcore.so.{ver}",
        Caps::GRAPHICS,
    ),
    lib("libnvoptix.so.{ver}", "libnvoptix.so.1", Caps::GRAPHICS),
    lib(
        "libGLX_nvidia.so.{ver}",
        "libGLX_nvidia.so.0",
        Caps::GRAPHICS,
    ),
    lib(
        "libEGL_nvidia.so.{ver}",
        "libEGL_nvidia.so.0",
        Caps::GRAPHICS,
    ),
    lib(
        "libGLESv2_nvidia.so.{ver}",
        "libGLESv2_nvidia.so.2",
        Caps::GRAPHICS,
    ),
    lib(
        "libGLESv1_CM_nvidia.so.{ver}",
        "libGLESv1_CM_nvidia.so.1",
        Caps::GRAPHICS,
    ),
    lib(
        "libnvidia-glvkspirv.so.{ver}",
        "libnvidia-glvkspirv.so.{ver}",
        Caps::GRAPHICS,
    ),
    // ngx
    lib("libnvidia-ngx.so.{ver}", "libnvidia-ngx.so.1", Caps::NGX),
    // binaries
    file(FileKind::Binary, "nvidia-smi", Caps::UTILITY),
    file(FileKind::Binary, "nvidia-debugdump", Caps::UTILITY),
    file(FileKind::Binary, "nvidia-persistenced", Caps::UTILITY),
    file(FileKind::Binary, "nvidia-cuda-mps-control", Caps::COMPUTE),
    file(FileKind::Binary, "nvidia-cuda-mps-server", Caps::COMPUTE),
    // GSP firmware
    file(
        FileKind::Firmware,
        "/lib/firmware/nvidia/{ver}/gsp_ga10x.bin",
        Caps::ANY,
    ),
    file(
        FileKind::Firmware,
        "/lib/firmware/nvidia/{ver}/gsp_tu10x.bin",
        Caps::ANY,
    ),
    // configuration files
    file(
        FileKind::ConfigFile,
        "/usr/share/vulkan/icd.d/nvidia_icd.json",
        GRAPHICS_DISPLAY,
    ),
    file(
        FileKind::ConfigFile,
        "/usr/share/glvnd/egl_vendor.d/10_nvidia.json",
        GRAPHICS_DISPLAY,
    ),
    DriverFileEntry {
        examples: &["10_nvidia_wayland.json"],
        ..file(
            FileKind::ConfigFile,
            "/usr/share/egl/egl_external_platform.d/*nvidia*.json",
            GRAPHICS_DISPLAY,
        )
    },
    // IPC
    file(
        FileKind::IpcSocket,
        "/run/nvidia-persistenced/socket",
        Caps::UTILITY,
    ),
    file(FileKind::IpcSocket, "/tmp/nvidia-mps", Caps::COMPUTE),
];

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

/// **Simulated hosts only.** Discovery looks for these only under a driver root that carries the
/// simulator's marker file ([`crate::simulate::MARKER`]), so a real host never gets them.
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
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_library_has_a_soname_and_a_versioned_name() {
        for f in driver_files("550.54.15") {
            match f.kind {
                FileKind::Library => {
                    assert!(f.name.ends_with(".so.550.54.15"), "{}", f.name);
                    let soname = f
                        .soname
                        .as_deref()
                        .unwrap_or_else(|| panic!("{} has no soname", f.name));
                    let stem = f.name.split(".so.").next().unwrap();
                    assert!(
                        soname.starts_with(&format!("{stem}.so.")),
                        "{soname} vs {}",
                        f.name
                    );
                }
                _ => assert!(f.soname.is_none(), "{}", f.name),
            }
            assert!(!f.name.contains("{ver}"), "{}", f.name);
            assert!(!f.caps.is_empty(), "{} belongs to no capability", f.name);
        }
    }

    #[test]
    fn names_are_unique() {
        let files = driver_files("550.54.15");
        let names: BTreeSet<String> = files.iter().map(|f| f.host_path()).collect();
        assert_eq!(names.len(), files.len());
    }

    #[test]
    fn the_sonames_the_ecosystem_relies_on() {
        let files = driver_files("550.54.15");
        let soname = |name: &str| {
            files
                .iter()
                .find(|f| f.name == name)
                .and_then(|f| f.soname.clone())
                .unwrap_or_default()
        };
        assert_eq!(soname("libcuda.so.550.54.15"), "libcuda.so.1");
        assert_eq!(soname("libnvidia-ml.so.550.54.15"), "libnvidia-ml.so.1");
        assert_eq!(soname("libnvidia-nvvm.so.550.54.15"), "libnvidia-nvvm.so.4");
        assert_eq!(
            soname("libGLESv2_nvidia.so.550.54.15"),
            "libGLESv2_nvidia.so.2"
        );
        assert_eq!(
            soname("libnvidia-glcore.so.550.54.15"),
            "libnvidia-glcore.so.550.54.15"
        );
    }

    #[test]
    fn capability_selection() {
        let utility = files_for("550.54.15", Caps::UTILITY);
        let names: Vec<&str> = utility.iter().map(|f| f.name.as_str()).collect();
        assert!(names.contains(&"libnvidia-ml.so.550.54.15"));
        assert!(names.contains(&"nvidia-smi"));
        assert!(names.contains(&"/run/nvidia-persistenced/socket"));
        assert!(!names.contains(&"libcuda.so.550.54.15"));
        assert!(!names.contains(&"/tmp/nvidia-mps"));
        // Firmware goes with every request.
        assert!(names.contains(&"/lib/firmware/nvidia/550.54.15/gsp_ga10x.bin"));
        let graphics = files_for("550.54.15", Caps::DISPLAY);
        assert!(graphics
            .iter()
            .any(|f| f.is_pattern() && f.examples == ["10_nvidia_wayland.json"]));
        assert!(graphics.iter().all(|f| f.kind != FileKind::Library));
    }

    #[test]
    fn host_paths() {
        let files = driver_files("550.54.15");
        let path = |name: &str| files.iter().find(|f| f.name == name).unwrap().host_path();
        assert_eq!(
            path("libcuda.so.550.54.15"),
            "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15"
        );
        assert_eq!(
            path("libvdpau_nvidia.so.550.54.15"),
            "/usr/lib/x86_64-linux-gnu/vdpau/libvdpau_nvidia.so.550.54.15"
        );
        assert_eq!(path("nvidia-smi"), "/usr/bin/nvidia-smi");
    }

    #[test]
    fn dev_links_and_search_dirs() {
        assert_eq!(dev_link_name("libcuda.so.1").as_deref(), Some("libcuda.so"));
        assert_eq!(
            dev_link_name("libnvidia-ml.so.1").as_deref(),
            Some("libnvidia-ml.so")
        );
        assert_eq!(dev_link_name("libnvidia-cfg.so.1"), None);
        assert_eq!(LIBRARY_DIRS[0], LIBRARY_DIR);
        assert_eq!(LIBRARY_DIRS_32[0], LIBRARY_DIR_32);
        assert_eq!(BINARY_DIRS[0], BINARY_DIR);
        for f in SIM_ONLY_FILES {
            assert!(f.host_path.starts_with('/'));
            assert!(!f.container_name.contains('/'));
            assert!(driver_files("1.2.3")
                .iter()
                .any(|d| d.soname.as_deref() == Some(f.beside)));
        }
    }

    #[test]
    fn capability_names_round_trip() {
        for c in Capability::ALL {
            assert_eq!(Capability::from_name(c.name()), Some(c));
        }
        assert_eq!(Capability::from_name("all"), None);
        let set: Caps = [Capability::Video, Capability::Compute]
            .into_iter()
            .collect();
        assert_eq!(format!("{set:?}"), "Caps(compute,video)");
        assert_eq!(Caps::ANY.iter().count(), 7);
        let consts = [
            (Capability::Compute, Caps::COMPUTE),
            (Capability::Utility, Caps::UTILITY),
            (Capability::Video, Caps::VIDEO),
            (Capability::Graphics, Caps::GRAPHICS),
            (Capability::Display, Caps::DISPLAY),
            (Capability::Ngx, Caps::NGX),
            (Capability::Compat32, Caps::COMPAT32),
        ];
        for (c, set) in consts {
            assert_eq!([c].into_iter().collect::<Caps>(), set, "{c}");
        }
    }
}
