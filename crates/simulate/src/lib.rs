//! `migcage simulate`: materialize a fake NVIDIA driver tree for a topology.
//!
//! Under one directory it writes what migcage reads on a real host, in the driver's formats:
//! `dev/` with real character device nodes (and the `dev/char/<major>:<minor>` links udev makes),
//! `proc/` with the driver's procfs files, the driver's user-space files (tiny but real ELF
//! libraries with the right sonames, the simulated NVML and nvidia-smi, firmware, ICD files), an
//! ld cache made by `ldconfig -r`, and a `config.toml` pointing migcage at all of it.
//!
//! It never fakes a device node with a regular file: without CAP_MKNOD it refuses. It only ever
//! replaces a directory that is empty or that it made itself (marked by [`MARKER`]).

pub mod config;
pub mod devfs;
pub mod elf;
pub mod libs;
pub mod procfs;

use std::fmt;
use std::path::{Path, PathBuf};

use migcage_driver_files::{LIBRARY_DIR, SIM_ONLY_FILES};
use migcage_topology::{Topology, TopologyError};

pub use config::config_text;
pub use libs::SimArtifacts;

/// The file that marks a directory as made by `migcage simulate`. Only the simulator reads it, to
/// know which directory it may replace; migcage never looks for it (what a simulated tree needs
/// differently, the config it writes says: `simulated_driver = true`).
pub const MARKER: &str = ".migcage-sim";

/// An error of `migcage simulate`; each renders as one line naming the path involved.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error("simulate needs CAP_MKNOD to create device nodes (run it as root); it does not fake them with regular files")]
    NoMknod,
    #[error("cannot read this process's capabilities: {0}")]
    Capabilities(String),
    #[error("refusing to replace {path}: it is not empty and has no {MARKER} marker, so simulate did not make it; give an empty or new directory")]
    NotOurs { path: PathBuf },
    #[error("{path} exists and is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("simulated NVML ({nvml}) and nvidia-smi not found in {looked}; build with cargo build --workspace, or point --sim-artifacts / ${env} at them", nvml = libs::NVML_SIM_LIB, env = libs::SIM_ARTIFACTS_ENV)]
    ArtifactsNotFound { looked: String },
    #[error("simulated NVML {path}: {message}")]
    BadArtifact { path: PathBuf, message: String },
    #[error("ldconfig not found in /sbin, /usr/sbin or PATH; it builds the simulated ld cache (Debian: libc-bin)")]
    NoLdconfig,
    #[error("ldconfig -r {root} failed: {message}")]
    Ldconfig { root: PathBuf, message: String },
    #[error("cannot serialize {what}: {message}")]
    Serialize { what: &'static str, message: String },
}

/// What to simulate, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulateOptions {
    /// A shipped topology's name or a topology file.
    pub topology: String,
    /// The directory to materialize the tree in.
    pub root: PathBuf,
    /// Directory holding the simulated NVML and nvidia-smi (see [`SimArtifacts::locate`]).
    pub sim_artifacts: Option<PathBuf>,
}

/// What was materialized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub topology: String,
    pub driver_version: String,
    pub root: PathBuf,
    pub gpus: usize,
    pub mig_gpus: usize,
    pub mig_devices: usize,
    pub device_nodes: usize,
    pub config: PathBuf,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        writeln!(
            f,
            "simulated {} (driver {}) in {}: {} ({} in MIG mode), {}, {}",
            self.topology,
            self.driver_version,
            self.root.display(),
            plural(self.gpus, "GPU"),
            self.mig_gpus,
            plural(self.mig_devices, "MIG device"),
            plural(self.device_nodes, "device node"),
        )?;
        writeln!(f, "config: {}", self.config.display())?;
        write!(
            f,
            "next: MIGCAGE_CONFIG={} migcage list",
            self.config.display()
        )
    }
}

/// Map an I/O error on `path` to [`SimulateError::Io`].
fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SimulateError + 'a {
    move |source| SimulateError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn has_cap_mknod() -> Result<bool, SimulateError> {
    caps::has_cap(None, caps::CapSet::Effective, caps::Capability::CAP_MKNOD)
        .map_err(|e| SimulateError::Capabilities(e.to_string()))
}

/// Make `root` an empty directory that simulate owns: create it, or empty it when it is empty
/// already or carries the marker. Anything else is refused before a single file is touched.
fn prepare_root(root: &Path) -> Result<(), SimulateError> {
    match std::fs::symlink_metadata(root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(root).map_err(io("create directory", root))?;
        }
        Err(e) => {
            return Err(SimulateError::Io {
                op: "stat",
                path: root.to_path_buf(),
                source: e,
            })
        }
        Ok(meta) if !meta.is_dir() => {
            return Err(SimulateError::NotADirectory {
                path: root.to_path_buf(),
            })
        }
        Ok(_) => {
            let entries: Vec<_> = std::fs::read_dir(root)
                .map_err(io("list", root))?
                .collect::<Result<_, _>>()
                .map_err(io("list", root))?;
            let ours = entries.iter().any(|e| e.file_name() == MARKER);
            if !entries.is_empty() && !ours {
                return Err(SimulateError::NotOurs {
                    path: root.to_path_buf(),
                });
            }
            // The marker goes last, so an interrupted clean-up can be retried.
            let (marker, others): (Vec<_>, Vec<_>) =
                entries.into_iter().partition(|e| e.file_name() == MARKER);
            for e in others.iter().chain(&marker) {
                let path = e.path();
                let is_dir = e.file_type().map_err(io("stat", &path))?.is_dir();
                if is_dir {
                    std::fs::remove_dir_all(&path).map_err(io("remove", &path))?;
                } else {
                    std::fs::remove_file(&path).map_err(io("remove", &path))?;
                }
            }
        }
    }
    libs::write_file(
        &root.join(MARKER),
        b"made by migcage simulate: the next run replaces everything in this directory\n",
        0o644,
    )
}

/// The simulated NVML's topology as a container must see it (sim-only, see
/// [`SIM_ONLY_FILES`]): only the devices whose nodes under the container's
/// `/dev` open, which is the real driver's rule. The hook mounts it next to the injected
/// `libnvidia-ml.so.1`; the host's copy (every device) stays where it is.
pub fn container_topology(host: &Topology) -> Topology {
    host.for_container()
}

fn write_container_topology(root: &Path, host: &Topology) -> Result<(), SimulateError> {
    for f in SIM_ONLY_FILES {
        if f.container_name == libs::SIM_TOPOLOGY_FILE {
            let path = root.join(f.host_path.trim_start_matches('/'));
            let text = host.container_toml(libs::SIM_TOPOLOGY_FILE);
            libs::write_file(&path, text.as_bytes(), 0o644)?;
        }
    }
    Ok(())
}

/// Materialize the tree. Checks everything it needs (topology, CAP_MKNOD, the simulated NVML,
/// ldconfig, the target directory) before writing anything.
pub fn simulate(opts: &SimulateOptions) -> Result<Summary, SimulateError> {
    let mut topology = Topology::load(&opts.topology)?;
    if !has_cap_mknod()? {
        return Err(SimulateError::NoMknod);
    }
    let artifacts = SimArtifacts::locate(opts.sim_artifacts.as_deref())?;
    artifacts.check()?;
    let ldconfig = libs::find_ldconfig().ok_or(SimulateError::NoLdconfig)?;
    let root = std::path::absolute(&opts.root).map_err(io("resolve", &opts.root))?;

    prepare_root(&root)?;

    let dev = root.join("dev");
    std::fs::create_dir_all(&dev).map_err(io("create directory", &dev))?;
    let nodes = devfs::nodes(&topology);
    devfs::create(&dev, &nodes)?;

    let proc = root.join("proc");
    for d in procfs::empty_dirs(&topology) {
        let path = proc.join(d);
        std::fs::create_dir_all(&path).map_err(io("create directory", &path))?;
    }
    for f in procfs::files(&topology) {
        libs::write_file(&proc.join(&f.path), f.text.as_bytes(), 0o444)?;
    }

    libs::write_driver_files(&root, &topology, &artifacts)?;
    topology.dev_root = Some(dev.display().to_string());
    topology.sim_root = Some(root.display().to_string());
    let topology_toml = topology.to_toml();
    let lib_dir = root.join(LIBRARY_DIR.trim_start_matches('/'));
    libs::write_file(
        &lib_dir.join(libs::SIM_TOPOLOGY_FILE),
        topology_toml.as_bytes(),
        0o644,
    )?;
    libs::write_file(&root.join("topology.toml"), topology_toml.as_bytes(), 0o644)?;
    write_container_topology(&root, &topology)?;
    libs::build_ld_cache(&root, &ldconfig)?;

    let state_dir = config::state_dir(&root);
    std::fs::create_dir_all(&state_dir).map_err(io("create directory", &state_dir))?;
    let text = config_text(&root)?;
    let config_path = root.join("config.toml");
    libs::write_file(&config_path, text.as_bytes(), 0o644)?;

    Ok(Summary {
        topology: topology.name.clone(),
        driver_version: topology.driver_version.clone(),
        root,
        gpus: topology.gpus.len(),
        mig_gpus: topology.gpus.iter().filter(|g| g.mig).count(),
        mig_devices: topology.mig_devices().len(),
        device_nodes: nodes.len(),
        config: config_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    /// A directory with stand-ins for the nvml-sim build outputs.
    fn fake_artifacts() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let lib = elf::tiny_shared_object(libs::NVML_SONAME, &["nvmlInit_v2"]);
        std::fs::write(dir.path().join(libs::NVML_SIM_LIB), lib).unwrap();
        std::fs::write(
            dir.path().join(libs::NVIDIA_SMI_SIM),
            "#!/bin/sh\necho fake nvidia-smi\n",
        )
        .unwrap();
        dir
    }

    fn opts(topology: &str, root: &Path, artifacts: &Path) -> SimulateOptions {
        SimulateOptions {
            topology: topology.into(),
            root: root.into(),
            sim_artifacts: Some(artifacts.into()),
        }
    }

    #[test]
    fn refuses_a_foreign_directory_and_a_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("precious"), "keep me").unwrap();
        let err = prepare_root(dir.path()).unwrap_err();
        assert!(matches!(err, SimulateError::NotOurs { .. }), "{err}");
        assert!(err.to_string().contains(&dir.path().display().to_string()));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("precious")).unwrap(),
            "keep me"
        );
        let err = prepare_root(&dir.path().join("precious")).unwrap_err();
        assert!(matches!(err, SimulateError::NotADirectory { .. }), "{err}");
    }

    #[test]
    fn replaces_its_own_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("sim");
        prepare_root(&root).unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/old"), "x").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("link-out")).unwrap();
        prepare_root(&root).unwrap();
        let names: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [MARKER]);
        assert!(
            Path::new("/etc/passwd").exists(),
            "a symlink is removed, not followed"
        );
    }

    #[test]
    fn materializes_a_tree_with_fake_artifacts() {
        if !has_cap_mknod().unwrap() {
            let dir = tempfile::tempdir().unwrap();
            let arts = fake_artifacts();
            let err = simulate(&opts("a100-7x1g", dir.path(), arts.path())).unwrap_err();
            assert!(matches!(err, SimulateError::NoMknod), "{err}");
            assert_eq!(
                std::fs::read_dir(dir.path()).unwrap().count(),
                0,
                "nothing written"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        let arts = fake_artifacts();
        let summary = simulate(&opts("two-gpus-one-mig", &root, arts.path())).unwrap();
        assert_eq!(
            (summary.gpus, summary.mig_gpus, summary.mig_devices),
            (2, 1, 3)
        );
        let shown = summary.to_string();
        assert!(
            shown.contains(&format!(
                "next: MIGCAGE_CONFIG={}/config.toml migcage list",
                root.display()
            )),
            "{shown}"
        );

        let meta = std::fs::metadata(root.join("dev/nvidia1")).unwrap();
        assert!(meta.file_type().is_char_device());
        assert_eq!(meta.rdev(), nix::sys::stat::makedev(195, 1));
        assert_eq!(meta.mode() & 0o7777, 0o666);
        let link = std::fs::read_link(root.join("dev/char/195:255")).unwrap();
        assert_eq!(link, Path::new("../nvidiactl"));
        assert!(std::fs::metadata(root.join("dev/char/195:255"))
            .unwrap()
            .file_type()
            .is_char_device());

        let text = std::fs::read_to_string(&summary.config).unwrap();
        assert_eq!(text, config_text(&root).unwrap());
        let nvml_library = root.join("usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1");
        assert!(text.contains(&format!(
            "nvml_library = {:?}",
            nvml_library.display().to_string()
        )));
        assert!(nvml_library.exists());
        let nvml = std::fs::read(&nvml_library).unwrap();
        assert_eq!(
            elf::read_soname(&nvml).as_deref(),
            Some("libnvidia-ml.so.1")
        );

        let topo = Topology::from_path(&root.join("topology.toml")).unwrap();
        assert_eq!(
            topo.dev_root.as_deref(),
            Some(root.join("dev").to_str().unwrap())
        );
        let beside_lib = root
            .join("usr/lib/x86_64-linux-gnu")
            .join(libs::SIM_TOPOLOGY_FILE);
        assert_eq!(Topology::from_path(&beside_lib).unwrap(), topo);
        // The containers' copy: the same devices, filtered by what /dev in the container opens.
        let for_containers = root.join(SIM_ONLY_FILES[0].host_path.trim_start_matches('/'));
        let ct = Topology::from_path(&for_containers).unwrap();
        assert_eq!(ct.visibility, migcage_topology::Visibility::DeviceNodes);
        assert_eq!(ct.dev_root.as_deref(), Some("/dev"));
        assert_eq!(ct.gpus, topo.gpus);
        assert_eq!(topo.visibility, migcage_topology::Visibility::All);

        let smi = std::fs::read_to_string(root.join("usr/bin/nvidia-smi")).unwrap();
        assert!(smi.contains("fake nvidia-smi"));
        assert!(root
            .join("lib/firmware/nvidia/550.54.15/gsp_ga10x.bin")
            .is_file());
        assert!(root
            .join("usr/share/egl/egl_external_platform.d/10_nvidia_wayland.json")
            .is_file());
        assert!(!root.join("run/nvidia-persistenced/socket").exists());
        assert!(root.join("run/migcage").is_dir());
    }
}
