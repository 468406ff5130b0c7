//! The driver's files a container gets: `NVIDIA_DRIVER_CAPABILITIES` x the files discovered on
//! this host -> bind mounts, symlinks and ld cache entries. Pure, no I/O.
//!
//! * Every file is bind-mounted at its host path, read-only, `nosuid` and `nodev`. Libraries and
//!   binaries stay executable (a library on a `noexec` mount cannot be mapped executable);
//!   firmware, configuration files and sockets are also `noexec`.
//! * Each library gets its soname link (`libcuda.so.1 -> libcuda.so.550.54.15`), and the
//!   libraries of [`crate::core::driver_files::DEV_SYMLINKS`] their development link
//!   (`libcuda.so -> libcuda.so.1`).
//! * The ld cache gets, for every library a host's ldconfig would list, the soname (and
//!   development link) at its container path, for its architecture.
//! * 32-bit libraries come only with `compat32`, for the other capabilities asked for; firmware
//!   comes with any request (the driver needs it whatever the container does).

use crate::core::driver_files::{Capability, Caps, FileKind, WRITABLE_IPC};
use crate::core::driver_files::{DriverFiles, HostFile};
use crate::core::edits::{LdCacheEntry, LibArch, Mount, Symlink};
use crate::core::request::DriverCapabilities;

use super::Plan;

/// The driver-file edits for one container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DriverEdits {
    pub mounts: Vec<Mount>,
    pub symlinks: Vec<Symlink>,
    pub ld_cache: Vec<LdCacheEntry>,
}

/// The request's capabilities as the driver file table names them.
pub fn caps_of(requested: DriverCapabilities) -> Caps {
    requested
        .names()
        .into_iter()
        .filter_map(Capability::from_name)
        .collect()
}

/// Whether the container asking for `wanted` gets `f`.
fn wanted(f: &HostFile, wanted: Caps) -> bool {
    let is_32 = f.library.as_ref().is_some_and(|l| l.arch == LibArch::I386);
    gets(f.caps, is_32, wanted)
}

/// Whether a container asking for `wanted` gets a file of capabilities `caps` (a 32-bit library
/// when `is_32`): the rule of [`driver_edits`], which discovery also uses to look only for
/// the files a container can get.
pub fn gets(caps: Caps, is_32: bool, wanted: Caps) -> bool {
    if !is_32 {
        return caps.intersects(wanted);
    }
    // A 32-bit library: with compat32, for the other capabilities asked for.
    let others: Caps = wanted
        .iter()
        .filter(|c| *c != Capability::Compat32)
        .collect();
    wanted.contains(Capability::Compat32) && caps.intersects(others)
}

/// Mount options for a file of `kind` at `path`.
fn options(kind: FileKind, path: &str) -> Vec<String> {
    let list: &[&str] = match kind {
        FileKind::Library | FileKind::Binary => &["ro", "nosuid", "nodev", "bind"],
        FileKind::IpcSocket if WRITABLE_IPC.contains(&path) => {
            &["nosuid", "nodev", "noexec", "bind"]
        }
        FileKind::Firmware | FileKind::ConfigFile | FileKind::IpcSocket => {
            &["ro", "nosuid", "nodev", "noexec", "bind"]
        }
    };
    list.iter().map(|s| s.to_string()).collect()
}

/// The edits that give a container asking for `requested` the driver's files in `files`.
pub fn driver_edits(requested: Caps, files: &DriverFiles) -> DriverEdits {
    let mut out = DriverEdits::default();
    for f in files.files.iter().filter(|f| wanted(f, requested)) {
        if out.mounts.iter().any(|m| m.container_path == f.path) {
            continue;
        }
        out.mounts.push(Mount {
            host_path: f.host_path.display().to_string(),
            container_path: f.path.clone(),
            options: options(f.kind, &f.path),
        });
        let Some(lib) = &f.library else { continue };
        let Some((dir, file_name)) = f.path.rsplit_once('/') else {
            continue;
        };
        let mut names = vec![(lib.soname.clone(), file_name.to_string())];
        if let Some(dev) = &lib.dev_link {
            names.push((dev.clone(), lib.soname.clone()));
        }
        for (name, target) in names {
            let link = format!("{dir}/{name}");
            if name != target && !out.symlinks.iter().any(|s| s.link == link) {
                out.symlinks.push(Symlink {
                    link: link.clone(),
                    target,
                });
            }
            if lib.in_ld_cache {
                out.ld_cache.push(LdCacheEntry {
                    soname: name,
                    path: link,
                    arch: lib.arch,
                });
            }
        }
    }
    out
}

/// Add the driver's files for the request's capabilities to `plan`.
pub fn add(plan: &mut Plan, requested: DriverCapabilities, files: &DriverFiles) {
    let edits = driver_edits(caps_of(requested), files);
    plan.edits.mounts.extend(edits.mounts);
    plan.edits.symlinks.extend(edits.symlinks);
    plan.edits.ld_cache.extend(edits.ld_cache);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::driver_files::Library;
    use std::path::PathBuf;

    const VER: &str = "550.54.15";
    const DIR: &str = "/usr/lib/x86_64-linux-gnu";

    fn lib(name: &str, soname: &str, caps: Caps, arch: LibArch, dir: &str) -> HostFile {
        HostFile {
            kind: FileKind::Library,
            caps,
            host_path: PathBuf::from(format!("/sim{dir}/{name}")),
            path: format!("{dir}/{name}"),
            library: Some(Library {
                soname: soname.into(),
                arch,
                dev_link: crate::core::driver_files::dev_link_name(soname),
                in_ld_cache: !dir.ends_with("vdpau"),
            }),
            sim_only: false,
        }
    }

    fn file(kind: FileKind, path: &str, caps: Caps) -> HostFile {
        HostFile {
            kind,
            caps,
            host_path: PathBuf::from(format!("/sim{path}")),
            path: path.into(),
            library: None,
            sim_only: false,
        }
    }

    fn host() -> DriverFiles {
        let v = |s: &str| s.replace("{v}", VER);
        DriverFiles {
            driver_version: VER.into(),
            files: vec![
                lib(
                    &v("libnvidia-ml.so.{v}"),
                    "libnvidia-ml.so.1",
                    Caps::UTILITY,
                    LibArch::X86_64,
                    DIR,
                ),
                lib(
                    &v("libcuda.so.{v}"),
                    "libcuda.so.1",
                    Caps::COMPUTE,
                    LibArch::X86_64,
                    DIR,
                ),
                lib(
                    &v("libcuda.so.{v}"),
                    "libcuda.so.1",
                    Caps::COMPUTE,
                    LibArch::I386,
                    "/usr/lib/i386-linux-gnu",
                ),
                lib(
                    &v("libnvidia-glcore.so.{v}"),
                    &v("libnvidia-glcore.so.{v}"),
                    Caps::GRAPHICS,
                    LibArch::X86_64,
                    DIR,
                ),
                lib(
                    &v("libvdpau_nvidia.so.{v}"),
                    "libvdpau_nvidia.so.1",
                    Caps::VIDEO,
                    LibArch::X86_64,
                    &format!("{DIR}/vdpau"),
                ),
                file(FileKind::Binary, "/usr/bin/nvidia-smi", Caps::UTILITY),
                file(
                    FileKind::Firmware,
                    &v("/lib/firmware/nvidia/{v}/gsp_ga10x.bin"),
                    Caps::ANY,
                ),
                file(
                    FileKind::ConfigFile,
                    "/usr/share/vulkan/icd.d/nvidia_icd.json",
                    Caps::GRAPHICS.or(Caps::DISPLAY),
                ),
                file(
                    FileKind::IpcSocket,
                    "/run/nvidia-persistenced/socket",
                    Caps::UTILITY,
                ),
                file(FileKind::IpcSocket, "/tmp/nvidia-mps", Caps::COMPUTE),
            ],
            missing: vec![],
        }
    }

    fn caps(s: &str) -> Caps {
        caps_of(s.parse().unwrap())
    }

    fn paths(e: &DriverEdits) -> Vec<&str> {
        e.mounts.iter().map(|m| m.container_path.as_str()).collect()
    }

    #[test]
    fn capability_names_map_onto_the_table() {
        assert_eq!(caps("compute,utility"), Caps::COMPUTE.or(Caps::UTILITY));
        assert_eq!(caps(""), Caps::COMPUTE.or(Caps::UTILITY), "the default");
        assert_eq!(caps("all"), Caps::ANY);
        assert_eq!(caps("compat32"), Caps::COMPAT32);
    }

    #[test]
    fn utility_gets_nvml_smi_firmware_and_the_persistenced_socket() {
        let e = driver_edits(caps("utility"), &host());
        assert_eq!(
            paths(&e),
            [
                &format!("{DIR}/libnvidia-ml.so.{VER}")[..],
                "/usr/bin/nvidia-smi",
                &format!("/lib/firmware/nvidia/{VER}/gsp_ga10x.bin"),
                "/run/nvidia-persistenced/socket",
            ]
        );
        assert_eq!(
            e.symlinks,
            [
                Symlink {
                    link: format!("{DIR}/libnvidia-ml.so.1"),
                    target: format!("libnvidia-ml.so.{VER}"),
                },
                Symlink {
                    link: format!("{DIR}/libnvidia-ml.so"),
                    target: "libnvidia-ml.so.1".into(),
                },
            ]
        );
        let cache: Vec<(&str, &str)> = e
            .ld_cache
            .iter()
            .map(|c| (c.soname.as_str(), c.path.as_str()))
            .collect();
        assert_eq!(
            cache,
            [
                ("libnvidia-ml.so.1", &format!("{DIR}/libnvidia-ml.so.1")[..]),
                ("libnvidia-ml.so", &format!("{DIR}/libnvidia-ml.so")),
            ]
        );
    }

    #[test]
    fn mount_options_keep_code_executable_and_the_rest_not() {
        let e = driver_edits(caps("all"), &host());
        let opts = |p: &str| {
            e.mounts
                .iter()
                .find(|m| m.container_path == p)
                .unwrap()
                .options
                .join(",")
        };
        assert_eq!(
            opts(&format!("{DIR}/libcuda.so.{VER}")),
            "ro,nosuid,nodev,bind"
        );
        assert_eq!(opts("/usr/bin/nvidia-smi"), "ro,nosuid,nodev,bind");
        assert_eq!(
            opts("/usr/share/vulkan/icd.d/nvidia_icd.json"),
            "ro,nosuid,nodev,noexec,bind"
        );
        assert_eq!(
            opts("/run/nvidia-persistenced/socket"),
            "ro,nosuid,nodev,noexec,bind"
        );
        assert_eq!(opts("/tmp/nvidia-mps"), "nosuid,nodev,noexec,bind");
        for m in &e.mounts {
            assert!(
                m.options.contains(&"nosuid".to_string())
                    && m.options.contains(&"nodev".to_string())
            );
        }
    }

    #[test]
    fn graphics_and_video_libraries() {
        let e = driver_edits(caps("graphics"), &host());
        assert!(paths(&e).contains(&&format!("{DIR}/libnvidia-glcore.so.{VER}")[..]));
        // Its soname is its file name: no link, one cache entry.
        assert!(e.symlinks.is_empty());
        assert_eq!(e.ld_cache.len(), 1);
        assert_eq!(e.ld_cache[0].soname, format!("libnvidia-glcore.so.{VER}"));
        let e = driver_edits(caps("video"), &host());
        // vdpau/ gets its soname link but no cache entry, as on a host.
        assert_eq!(
            e.symlinks,
            [Symlink {
                link: format!("{DIR}/vdpau/libvdpau_nvidia.so.1"),
                target: format!("libvdpau_nvidia.so.{VER}"),
            }]
        );
        assert!(e.ld_cache.is_empty());
    }

    #[test]
    fn thirty_two_bit_only_with_compat32_and_for_the_other_capabilities() {
        let is32 = |e: &DriverEdits| e.mounts.iter().any(|m| m.container_path.contains("i386"));
        assert!(!is32(&driver_edits(caps("compute"), &host())));
        assert!(!is32(&driver_edits(caps("utility,compat32"), &host())));
        let e = driver_edits(caps("compute,compat32"), &host());
        assert!(is32(&e));
        assert!(e
            .ld_cache
            .iter()
            .any(|c| c.arch == LibArch::I386 && c.soname == "libcuda.so.1"));
        let only = driver_edits(caps("compat32"), &host());
        assert_eq!(
            paths(&only),
            [&format!("/lib/firmware/nvidia/{VER}/gsp_ga10x.bin")[..]],
            "firmware goes with any request"
        );
    }

    #[test]
    fn add_extends_the_plan() {
        let mut plan = Plan::default();
        add(&mut plan, "compute".parse().unwrap(), &host());
        assert!(plan
            .edits
            .mounts
            .iter()
            .any(|m| m.container_path.ends_with(&format!("libcuda.so.{VER}"))));
        assert_eq!(plan.edits.ld_cache_dirs(), [DIR]);
        assert!(plan.edits.device_nodes.is_empty());
    }
}
