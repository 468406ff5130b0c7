//! The table itself: every file of a driver installation, as a template.

use serde::Serialize;

use crate::Caps;

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
