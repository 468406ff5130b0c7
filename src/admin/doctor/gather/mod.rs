//! Reading the host into [`Facts`]: the driver's procfs, NVML (with a bounded wait), device
//! nodes, cgroup mounts, the runtimes' files, hooks.d, CDI specs and the state directory.

mod containerd;
mod engines;
mod nodes;
mod parse;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::backend::cdi;
use crate::config::{Config, ConfigError};
use crate::host::inventory::{self, InventoryError};

use super::facts::*;

use engines::{gather_docker_hooks, gather_hook_files, gather_runtimes};
use nodes::gather_nodes;

pub use engines::names_migcage;
pub use parse::{parse_hook_file, parse_runtime_config};

/// Where doctor looks, besides the configuration's roots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatherOptions {
    /// Root of the host's own files: `/etc` (runtime configuration), hooks.d, CDI spec
    /// directories, `/run/systemd/system`, the standard binary directories. `/` on a host.
    pub host_root: PathBuf,
    /// Directories searched for runtime binaries besides `host_root`'s standard ones (`$PATH`).
    pub path: Vec<PathBuf>,
}

impl Default for GatherOptions {
    fn default() -> Self {
        GatherOptions {
            host_root: PathBuf::from("/"),
            path: std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect())
                .unwrap_or_default(),
        }
    }
}

impl GatherOptions {
    fn host(&self, abs: &str) -> PathBuf {
        self.host_root.join(abs.trim_start_matches('/'))
    }
}

/// The OCI hooks directories podman and cri-o read by default.
pub const HOOK_DIRS: &[&str] = &[
    "/usr/share/containers/oci/hooks.d",
    "/etc/containers/oci/hooks.d",
];
/// The CDI spec directories (static and dynamic), as the CDI specification names them.
pub const CDI_DIRS: &[&str] = &["/etc/cdi", "/var/run/cdi"];
/// The directory whose `nvidia-container-runtime-hook` link `docker run --gpus` finds when it is
/// on dockerd's PATH.
pub const DOCKER_HOOK_DIR: &str = "/usr/lib/migcage/bin";

/// Read the host. `loaded` is the result of loading the configuration file; a broken file is a
/// finding, and doctor goes on with the defaults.
pub fn gather(
    loaded: Result<(Config, Option<PathBuf>), ConfigError>,
    opts: &GatherOptions,
) -> Facts {
    let (config, config_fact) = match loaded {
        Ok((c, path)) => (c, ConfigFact::Loaded(path)),
        Err(e) => (Config::default(), ConfigFact::Broken(e.to_string())),
    };
    let driver = match inventory::read_procfs(&config) {
        Ok(p) => DriverFact::Loaded(p),
        Err(InventoryError::NoDriver { path, .. }) => DriverFact::NotLoaded { path },
        Err(e) => DriverFact::Unreadable(e.to_string()),
    };
    let (nvml, inventory) = gather_nvml(&config, &driver);
    let (nodes, cap_mismatches) = match &driver {
        DriverFact::Loaded(p) => {
            let dev_char = opts.host(&config.host.dev_char_dir.to_string_lossy());
            gather_nodes(&config, &dev_char, p)
        }
        _ => (Vec::new(), Vec::new()),
    };
    let hook_dirs: Vec<PathBuf> = HOOK_DIRS.iter().map(|d| opts.host(d)).collect();
    let cdi_dirs: Vec<PathBuf> = CDI_DIRS.iter().map(|d| opts.host(d)).collect();
    let log_dir = (!config.log.file.is_empty()).then(|| {
        let file = PathBuf::from(&config.log.file);
        let dir = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let w = writable(&dir);
        (file, w)
    });
    let runtimes = gather_runtimes(opts);
    let docker_hooks = if runtimes
        .iter()
        .any(|r| r.name == "docker" && r.binary.is_some())
    {
        gather_docker_hooks(opts)
    } else {
        Vec::new()
    };
    let inv = inventory.as_ref().and_then(|r| r.as_ref().ok());
    Facts {
        cdi_specs: gather_cdi(&cdi_dirs, inv, &config.dev_root),
        config: config_fact,
        driver,
        nvml,
        inventory,
        nodes,
        cap_mismatches,
        cgroup: gather_cgroup(opts),
        runtimes,
        docker_hooks,
        hook_files: gather_hook_files(&hook_dirs),
        hook_dirs,
        cdi_dirs,
        state_dir: writable(&config.state_dir),
        log_dir,
        roots: config,
    }
}

type InventoryFact = Option<Result<inventory::Inventory, String>>;

fn gather_nvml(config: &Config, driver: &DriverFact) -> (NvmlFact, InventoryFact) {
    let library = config.nvml_library.clone();
    let timeout = Duration::from_millis(config.nvml_timeout_ms);
    let start = Instant::now();
    let info = match inventory::read_nvml_bounded(&library, timeout) {
        Ok(info) => info,
        Err(InventoryError::NvmlTimeout {
            library,
            timeout_ms,
        }) => {
            return (
                NvmlFact::TimedOut {
                    library,
                    timeout_ms,
                },
                None,
            )
        }
        Err(e) => return (NvmlFact::Failed(e.to_string()), None),
    };
    let elapsed = start.elapsed();
    let gpus = info.gpus.clone();
    // The cross-check discovery makes: NVML answered quickly once, so a second read is cheap
    // (and it is the code path a container start takes).
    let cross = match driver {
        DriverFact::Loaded(proc) => {
            Some(inventory::discover_with(config, proc).map_err(|e| e.to_string()))
        }
        _ => None,
    };
    (
        NvmlFact::Loaded {
            library,
            driver_version: info.driver_version,
            gpus,
            elapsed,
        },
        cross,
    )
}

fn gather_cgroup(opts: &GatherOptions) -> CgroupFact {
    let proc = Path::new(crate::backend::hook::PROCESS_PROC);
    let devices = crate::host::cgroup::find_device_cgroup(proc, std::process::id())
        .map_err(|e| e.to_string());
    let mountinfo = proc.join("self/mountinfo");
    let cgroup2_mounts = std::fs::read_to_string(&mountinfo)
        .ok()
        .and_then(|t| crate::host::cgroup::parse_mountinfo(&t, &mountinfo).ok())
        .map(|mounts| {
            crate::host::cgroup::visible_mounts(&mounts)
                .into_iter()
                .filter(|m| m.fs_type == "cgroup2")
                .map(|m| m.mount_point.clone())
                .collect()
        })
        .unwrap_or_default();
    CgroupFact {
        devices,
        cgroup2_mounts,
        systemd_init: opts.host("/run/systemd/system").is_dir(),
    }
}

fn gather_cdi(
    dirs: &[PathBuf],
    inv: Option<&inventory::Inventory>,
    dev_root: &Path,
) -> Vec<CdiFact> {
    let mut out = Vec::new();
    for dir in dirs {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && cdi::Format::of_path(p).is_some())
            .collect();
        files.sort();
        for path in files {
            let spec = cdi::read(&path).map_err(|e| e.to_string()).map(|spec| {
                if !cdi::is_migcage_spec(&spec) {
                    return CdiSpecFact::Other { kind: spec.kind };
                }
                // The spec the host would get now, made as `cdi generate` made this one.
                let now = inv
                    .zip(spec.kind.parse::<cdi::Kind>().ok())
                    .and_then(|(inv, kind)| {
                        let hook_path = spec
                            .container_edits
                            .hooks
                            .first()
                            .map(|h| PathBuf::from(&h.path))
                            .unwrap_or_default();
                        let opts = cdi::GenerateOptions {
                            kind,
                            hook_path,
                            config_path: None,
                            driver_capabilities: crate::core::request::DriverCapabilities::DEFAULT,
                            driver_files: Default::default(),
                        };
                        cdi::generate(inv, dev_root, &opts).ok()
                    });
                CdiSpecFact::Migcage {
                    kind: spec.kind.clone(),
                    devices: spec.devices.len(),
                    stale: now.map(|now| cdi::staleness(&path, &spec, &now.spec)),
                }
            });
            out.push(CdiFact { path, spec });
        }
    }
    out
}

/// Whether `dir` is a directory this process can create files in: tried for real (a file made
/// and removed), since permission bits say little to root and nothing about read-only mounts.
pub fn writable(dir: &Path) -> WritableFact {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => WritableFact::NotADirectory,
        Ok(_) => {
            let probe = dir.join(format!(".migcage-doctor-{}", std::process::id()));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&probe)
            {
                Ok(_) => {
                    let _ = std::fs::remove_file(&probe);
                    WritableFact::Writable
                }
                Err(e) => WritableFact::NotWritable(e.to_string()),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut anc = dir.parent();
            while let Some(a) = anc {
                match std::fs::metadata(a) {
                    Ok(m) => {
                        let creatable = m.is_dir()
                            && nix::unistd::access(a, nix::unistd::AccessFlags::W_OK).is_ok();
                        return WritableFact::Missing {
                            creatable,
                            ancestor: a.to_path_buf(),
                        };
                    }
                    Err(_) => anc = a.parent(),
                }
            }
            WritableFact::Missing {
                creatable: false,
                ancestor: PathBuf::from("/"),
            }
        }
        // ENOTDIR: a component of the path is a file.
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => WritableFact::NotADirectory,
        Err(e) => WritableFact::NotWritable(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writable_probe() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(writable(d.path()), WritableFact::Writable);
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            0,
            "probe file removed"
        );
        assert_eq!(
            writable(&d.path().join("a/b")),
            WritableFact::Missing {
                creatable: true,
                ancestor: d.path().to_path_buf()
            }
        );
        std::fs::write(d.path().join("f"), "").unwrap();
        assert_eq!(writable(&d.path().join("f")), WritableFact::NotADirectory);
        assert_eq!(
            writable(&d.path().join("f/state")),
            WritableFact::NotADirectory
        );
    }
}
