//! The driver's user-space files in the simulated tree: every entry of
//! [`migcage_driver_files::DRIVER_FILES`] materialized, the simulated NVML and nvidia-smi copied in,
//! and an ld cache made by the system's `ldconfig`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use migcage_topology::Topology;

use super::{elf, io, SimulateError};
use migcage_driver_files::{dev_link_name, driver_files, FileKind, LIBRARY_DIR};

/// The file name of the simulated NVML cdylib (crates/nvml-sim).
pub const NVML_SIM_LIB: &str = "libnvidia_ml_sim.so";
/// The simulated nvidia-smi binary (crates/nvml-sim).
pub const NVIDIA_SMI_SIM: &str = "nvidia-smi";
/// The soname the simulated NVML must carry to stand in for the real one.
pub const NVML_SONAME: &str = "libnvidia-ml.so.1";
/// The file the simulated NVML reads its topology from, next to itself.
pub const SIM_TOPOLOGY_FILE: &str = "nvidia-sim-topology.toml";
/// The environment variable naming the directory of the simulated NVML and nvidia-smi.
pub const SIM_ARTIFACTS_ENV: &str = "MIGCAGE_SIM_ARTIFACTS";
/// Where a package installs them.
pub const INSTALLED_ARTIFACTS_DIR: &str = "/usr/lib/migcage";

/// The built simulated NVML library and nvidia-smi.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimArtifacts {
    pub nvml: PathBuf,
    pub nvidia_smi: PathBuf,
}

impl SimArtifacts {
    fn in_dir(dir: &Path) -> Option<SimArtifacts> {
        let a = SimArtifacts {
            nvml: dir.join(NVML_SIM_LIB),
            nvidia_smi: dir.join(NVIDIA_SMI_SIM),
        };
        (a.nvml.is_file() && a.nvidia_smi.is_file()).then_some(a)
    }

    /// Find the artifacts: in `explicit` (the `--sim-artifacts` flag, else `$MIGCAGE_SIM_ARTIFACTS`)
    /// only, when given; otherwise next to the running executable, then in /usr/lib/migcage.
    pub fn locate(explicit: Option<&Path>) -> Result<SimArtifacts, SimulateError> {
        let from_env = std::env::var_os(SIM_ARTIFACTS_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let candidates: Vec<PathBuf> = match explicit.map(Path::to_path_buf).or(from_env) {
            Some(dir) => vec![dir],
            None => {
                let exe_dir = std::env::current_exe()
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf));
                exe_dir
                    .into_iter()
                    .chain([PathBuf::from(INSTALLED_ARTIFACTS_DIR)])
                    .collect()
            }
        };
        candidates
            .iter()
            .find_map(|d| SimArtifacts::in_dir(d))
            .ok_or_else(|| SimulateError::ArtifactsNotFound {
                looked: candidates
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Check that the library is an ELF object with the NVML soname.
    pub fn check(&self) -> Result<(), SimulateError> {
        let bytes = std::fs::read(&self.nvml).map_err(|source| SimulateError::Io {
            op: "read",
            path: self.nvml.clone(),
            source,
        })?;
        match elf::read_soname(&bytes) {
            Some(s) if s == NVML_SONAME => Ok(()),
            other => Err(SimulateError::BadArtifact {
                path: self.nvml.clone(),
                message: format!("its soname is {other:?}, not {NVML_SONAME:?} (nvml-sim must link with -soname)"),
            }),
        }
    }
}

/// Symbols the simulated library with this soname exports (callable, returning 0).
pub fn exported_symbols(soname: &str) -> &'static [&'static str] {
    match soname {
        "libcuda.so.1" => &["cuInit"],
        _ => &[],
    }
}

/// Where `ldconfig` is, if anywhere.
pub fn find_ldconfig() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    ["/sbin", "/usr/sbin"]
        .into_iter()
        .map(PathBuf::from)
        .chain(std::env::split_paths(&path))
        .map(|d| d.join("ldconfig"))
        .find(|p| p.is_file())
}

/// Write `contents` to `path` (creating its directory) with permission bits `mode`.
pub(super) fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), SimulateError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io("create directory", parent))?;
    }
    std::fs::write(path, contents).map_err(io("write", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io("chmod", path))
}

fn symlink(target: &str, link: &Path) -> Result<(), SimulateError> {
    std::os::unix::fs::symlink(target, link).map_err(io("symlink", link))
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<(), SimulateError> {
    let bytes = std::fs::read(from).map_err(io("read", from))?;
    write_file(to, &bytes, mode)
}

/// A stand-in for a driver binary other than nvidia-smi.
fn script(name: &str, driver_version: &str) -> String {
    format!(
        "#!/bin/sh\n# {name} {driver_version}, simulated by migcage: there is no GPU behind this tree.\n\
         echo \"{name}: simulated by migcage (driver {driver_version}); nothing to do\" >&2\nexit 0\n"
    )
}

/// Contents of a configuration file of the table.
fn config_file(file_name: &str) -> String {
    let library = match file_name {
        "nvidia_icd.json" => {
            return "{\n    \"file_format_version\" : \"1.0.0\",\n    \"ICD\": {\n        \"library_path\": \"libGLX_nvidia.so.0\",\n        \"api_version\" : \"1.3.277\"\n    }\n}\n".into();
        }
        "10_nvidia.json" => "libEGL_nvidia.so.0",
        "10_nvidia_wayland.json" => "libnvidia-egl-wayland.so.1",
        _ => "libEGL_nvidia.so.0",
    };
    format!("{{\n    \"file_format_version\" : \"1.0.0\",\n    \"ICD\" : {{\n        \"library_path\" : \"{library}\"\n    }}\n}}\n")
}

/// Firmware image stand-in: recognisably fake, but a real file of some size.
fn firmware(name: &str, driver_version: &str) -> Vec<u8> {
    let mut bytes = format!("NVIDIA GSP firmware {name} {driver_version} (simulated by migcage)\n")
        .into_bytes();
    bytes.resize(4096, 0);
    bytes
}

/// Write the driver's files under `root` for topology `t`.
pub fn write_driver_files(
    root: &Path,
    t: &Topology,
    artifacts: &SimArtifacts,
) -> Result<(), SimulateError> {
    let ver = &t.driver_version;
    let rel = |abs: &str| root.join(abs.trim_start_matches('/'));
    let lib_dir = rel(LIBRARY_DIR);
    std::fs::create_dir_all(&lib_dir).map_err(io("create directory", &lib_dir))?;
    for f in driver_files(ver) {
        match f.kind {
            FileKind::Library => {
                let path = rel(&f.host_path());
                let soname = f.soname.as_deref().unwrap_or(&f.name);
                if soname == NVML_SONAME {
                    copy(&artifacts.nvml, &path, 0o755)?;
                } else {
                    write_file(
                        &path,
                        &elf::tiny_shared_object(soname, exported_symbols(soname)),
                        0o755,
                    )?;
                }
                let dir = path.parent().expect("a library path has a directory");
                if soname != f.name {
                    symlink(&f.name, &dir.join(soname))?;
                }
                if let Some(dev_name) = dev_link_name(soname) {
                    symlink(soname, &dir.join(dev_name))?;
                }
            }
            FileKind::Binary => {
                let path = rel(&f.host_path());
                if f.name == NVIDIA_SMI_SIM {
                    copy(&artifacts.nvidia_smi, &path, 0o755)?;
                } else {
                    write_file(&path, script(&f.name, ver).as_bytes(), 0o755)?;
                }
            }
            FileKind::Firmware => {
                let name = f.name.rsplit('/').next().unwrap_or(&f.name);
                write_file(&rel(&f.name), &firmware(name, ver), 0o644)?;
            }
            FileKind::ConfigFile => {
                let paths: Vec<String> = if f.is_pattern() {
                    let dir = f.name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                    f.examples.iter().map(|e| format!("{dir}/{e}")).collect()
                } else {
                    vec![f.name.clone()]
                };
                for p in paths {
                    let name = p.rsplit('/').next().unwrap_or(&p);
                    write_file(&rel(&p), config_file(name).as_bytes(), 0o644)?;
                }
            }
            // Sockets exist only while their daemons run.
            FileKind::IpcSocket => {}
        }
    }
    Ok(())
}

/// Write `etc/ld.so.conf`, run `ldconfig -r root`, and check the cache lists `libcuda.so.1`.
pub fn build_ld_cache(root: &Path, ldconfig: &Path) -> Result<(), SimulateError> {
    write_file(
        &root.join("etc/ld.so.conf"),
        format!("{LIBRARY_DIR}\n").as_bytes(),
        0o644,
    )?;
    let fail = |message: String| SimulateError::Ldconfig {
        root: root.to_path_buf(),
        message,
    };
    let out = Command::new(ldconfig)
        .arg("-r")
        .arg(root)
        .output()
        .map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(one_line(&out.stderr)));
    }
    let listed = list_ld_cache(root, ldconfig)?;
    if !listed.contains("libcuda.so.1 ") {
        return Err(fail(format!(
            "the cache it wrote does not list libcuda.so.1: {}",
            one_line(listed.as_bytes())
        )));
    }
    Ok(())
}

/// `ldconfig -r root -p`: the cache's listing.
pub fn list_ld_cache(root: &Path, ldconfig: &Path) -> Result<String, SimulateError> {
    let fail = |message: String| SimulateError::Ldconfig {
        root: root.to_path_buf(),
        message,
    };
    let out = Command::new(ldconfig)
        .arg("-r")
        .arg(root)
        .arg("-p")
        .output()
        .map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(one_line(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn one_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let joined = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if joined.is_empty() {
        "no output".into()
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_files_are_json_naming_the_icd() {
        for name in [
            "nvidia_icd.json",
            "10_nvidia.json",
            "10_nvidia_wayland.json",
        ] {
            let text = config_file(name);
            let v: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(v["file_format_version"], "1.0.0");
            assert!(
                v["ICD"]["library_path"]
                    .as_str()
                    .unwrap()
                    .starts_with("lib"),
                "{name}"
            );
        }
    }

    #[test]
    fn locate_prefers_the_explicit_dir_and_names_it_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let err = SimArtifacts::locate(Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
        assert!(err.contains("cargo build --workspace"), "{err}");
        assert!(!err.contains('\n'));
        std::fs::write(
            dir.path().join(NVML_SIM_LIB),
            elf::tiny_shared_object("libnvidia-ml.so.1", &[]),
        )
        .unwrap();
        std::fs::write(dir.path().join(NVIDIA_SMI_SIM), "#!/bin/sh\n").unwrap();
        let found = SimArtifacts::locate(Some(dir.path())).unwrap();
        assert_eq!(found.nvml, dir.path().join(NVML_SIM_LIB));
        found.check().unwrap();
        std::fs::write(
            dir.path().join(NVML_SIM_LIB),
            elf::tiny_shared_object("libwrong.so", &[]),
        )
        .unwrap();
        let err = found.check().unwrap_err().to_string();
        assert!(
            err.contains("libwrong.so") && err.contains(NVML_SONAME),
            "{err}"
        );
    }

    #[test]
    fn scripts_are_shell() {
        let s = script("nvidia-debugdump", "550.54.15");
        assert!(s.starts_with("#!/bin/sh\n") && s.ends_with("exit 0\n"));
    }
}
