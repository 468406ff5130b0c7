//! The container runtimes and engines: their binaries and configuration files, the hooks.d
//! files, and the `nvidia-container-runtime-hook` that `docker run --gpus` finds.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::super::facts::*;
use super::parse::{parse_hook_file, parse_runtime_config};
use super::GatherOptions;

/// Where each runtime's binary and configuration files are.
const RUNTIMES: &[(&str, &[&str], &[&str])] = &[
    ("runc", &["runc"], &[]),
    ("crun", &["crun"], &[]),
    ("docker", &["dockerd"], &["/etc/docker/daemon.json"]),
    (
        "podman",
        &["podman"],
        &[
            "/usr/share/containers/containers.conf",
            "/etc/containers/containers.conf",
        ],
    ),
    (
        "containerd",
        &["containerd"],
        &["/etc/containerd/config.toml"],
    ),
    ("cri-o", &["crio"], &["/etc/crio/crio.conf"]),
];

fn find_binary(opts: &GatherOptions, names: &[&str]) -> Option<PathBuf> {
    let standard = [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]
    .map(|d| opts.host(d));
    let dirs: Vec<PathBuf> = if opts.host_root == Path::new("/") {
        opts.path.iter().cloned().chain(standard).collect()
    } else {
        standard
            .into_iter()
            .chain(opts.path.iter().cloned())
            .collect()
    };
    names.iter().find_map(|n| {
        dirs.iter()
            .map(|d| d.join(n))
            .find(|p| p.is_file() && is_executable(p))
    })
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
}

/// Whether a configured path names migcage: its file name starts with `migcage`
/// (`migcage`, `migcage-runtime`), or it resolves to such a file.
pub fn names_migcage(path: &str) -> bool {
    let named = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("migcage"))
    };
    let p = Path::new(path);
    named(p) || std::fs::canonicalize(p).is_ok_and(|c| named(&c))
}

pub(super) fn gather_runtimes(opts: &GatherOptions) -> Vec<RuntimeFact> {
    RUNTIMES
        .iter()
        .map(|(name, bins, configs)| {
            let mut files: Vec<PathBuf> = configs.iter().map(|c| opts.host(c)).collect();
            if *name == "cri-o" {
                files.extend(sorted_entries(&opts.host("/etc/crio/crio.conf.d"), ".conf"));
            }
            let configs = files
                .into_iter()
                .filter(|p| p.exists())
                .map(|p| {
                    let parsed = std::fs::read_to_string(&p)
                        .map_err(|e| format!("cannot read it: {e}"))
                        .and_then(|text| parse_runtime_config(name, &text));
                    (p, parsed)
                })
                .collect();
            RuntimeFact {
                name,
                binary: find_binary(opts, bins),
                configs,
            }
        })
        .collect()
}

fn sorted_entries(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_str().is_some_and(|s| s.ends_with(suffix)))
        .collect();
    v.sort();
    v
}

pub(super) fn gather_hook_files(dirs: &[PathBuf]) -> Vec<HookFileFact> {
    let mut out = Vec::new();
    for dir in dirs {
        for path in sorted_entries(dir, ".json") {
            let hook = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read it: {e}"))
                .and_then(|t| parse_hook_file(&t));
            let hook = match hook {
                Ok((hook_path, stages)) => {
                    let name = hook_path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or_default()
                        .to_string();
                    let is_migcage = names_migcage(&hook_path.to_string_lossy());
                    // Only files about GPUs: migcage's, and NVIDIA's own (they would both act).
                    if !is_migcage && !name.starts_with("nvidia-container") {
                        continue;
                    }
                    Ok(HookFile {
                        executable: is_executable(&hook_path),
                        hook_path,
                        stages,
                        is_migcage,
                    })
                }
                Err(e) => {
                    let named = path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or_default();
                    if !named.contains("migcage") {
                        continue;
                    }
                    Err(e)
                }
            };
            out.push(HookFileFact { path, hook });
        }
    }
    out
}

/// `nvidia-container-runtime-hook` as `docker run --gpus` finds it: on each running dockerd's
/// PATH (from its environment: the daemon looks the hook up on its own PATH), or, with no dockerd
/// running, on the PATH systemd gives services.
pub(super) fn gather_docker_hooks(opts: &GatherOptions) -> Vec<DockerHookFact> {
    const SERVICE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    // (where the PATH came from, the PATH, why it could not be read)
    let mut paths: Vec<(String, String, Option<String>)> = Vec::new();
    if opts.host_root == Path::new("/") {
        let mut pids: Vec<u32> = std::fs::read_dir(crate::backend::hook::PROCESS_PROC)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        for pid in pids {
            let dir = Path::new(crate::backend::hook::PROCESS_PROC).join(pid.to_string());
            let is_dockerd =
                std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim_end() == "dockerd");
            if !is_dockerd {
                continue;
            }
            let environ = dir.join("environ");
            let env = match std::fs::read(&environ) {
                Ok(env) => env,
                Err(e) => {
                    let why = format!("cannot read {}: {e}", environ.display());
                    paths.push((
                        format!("running dockerd (pid {pid})"),
                        String::new(),
                        Some(why),
                    ));
                    continue;
                }
            };
            let path = env
                .split(|b| *b == 0)
                .find_map(|kv| kv.strip_prefix(b"PATH="))
                .map(|p| String::from_utf8_lossy(p).into_owned());
            paths.push(match path {
                Some(p) => (format!("PATH of the running dockerd (pid {pid})"), p, None),
                None => (
                    format!("running dockerd's (pid {pid}) default PATH"),
                    SERVICE_PATH.to_string(),
                    None,
                ),
            });
        }
    }
    if paths.is_empty() {
        paths.push((
            "PATH systemd gives services (dockerd is not running)".into(),
            SERVICE_PATH.into(),
            None,
        ));
    }
    paths
        .into_iter()
        .map(|(path_from, path, unreadable)| {
            let found = std::env::split_paths(&path)
                .filter(|d| d.is_absolute())
                .map(|d| {
                    opts.host(&d.display().to_string())
                        .join("nvidia-container-runtime-hook")
                })
                .find(|p| is_executable(p))
                .map(|p| {
                    let is_migcage = names_migcage(&p.display().to_string());
                    (p, is_migcage)
                });
            DockerHookFact {
                path_from,
                found,
                unreadable,
            }
        })
        .collect()
}
