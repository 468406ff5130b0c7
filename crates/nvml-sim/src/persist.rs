//! The simulated MIG state across processes: a state file holding the whole topology as the last
//! change left it, changed only under an exclusive `flock` of a lock file beside it, and each
//! change mirrored into the simulated driver tree the way the real driver shows it.
//!
//! - Where: `<sim_root>/var/lib/migcage-sim/state.toml` for a tree made by `migcage simulate`
//!   (the topology's `sim_root`), else `nvidia-sim-state.toml` beside the topology file.
//! - Read at `nvmlInit` (when it exists it wins over the topology file) and again, under the
//!   lock, by every change, so that two processes never lose each other's changes.
//! - Mirrored (with a `sim_root`): the access capability files under
//!   `proc/driver/nvidia/capabilities/gpu<minor>/mig/gi<G>[/ci<C>]/access`, the caps nodes
//!   `dev/nvidia-caps/nvidia-cap<N>` with their `dev/char` links, and the container's copy of the
//!   topology (`usr/share/migcage-sim/...`), so that a container sees the new instance too.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use migcage_driver_files::SIM_ONLY_FILES;
use migcage_topology::{capability_file, instance_capability, Topology, CAP_READ_MODE};

/// The state file of a simulated tree, below its root.
pub const STATE_IN_ROOT: &str = "var/lib/migcage-sim/state.toml";
/// The state file beside a topology file that has no simulated root.
pub const STATE_BESIDE: &str = "nvidia-sim-state.toml";

/// Where the state of the topology read from `topology_path` lives.
pub fn state_path(topology_path: &Path, topo: &Topology) -> PathBuf {
    match &topo.sim_root {
        Some(root) => Path::new(root).join(STATE_IN_ROOT),
        None => topology_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(STATE_BESIDE),
    }
}

/// The topology at `topology_path`, or the state file's when a change has been made. The error
/// is one line naming the file.
pub fn load(topology_path: &Path) -> Result<Topology, String> {
    let one_line =
        |e: migcage_topology::TopologyError| e.to_string().lines().collect::<Vec<_>>().join(" ");
    let topo = Topology::from_path(topology_path).map_err(one_line)?;
    let state = state_path(topology_path, &topo);
    if state.exists() {
        return Topology::from_path(&state).map_err(one_line);
    }
    Ok(topo)
}

/// An exclusive `flock` on `<state>.lock`, released when dropped (the file closes).
struct Lock {
    _file: File,
}

fn lock(state: &Path) -> std::io::Result<Lock> {
    if let Some(dir) = state.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let path = state.with_extension("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    // SAFETY: flock on a file descriptor this function owns (open for its whole lifetime).
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Lock { _file: file })
}

/// Write `text` to `path` atomically (temp file + rename).
fn write_atomic(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, path)
}

/// Why a change could not be made or kept.
#[derive(Debug)]
pub enum ChangeError<E> {
    /// The change itself refused (an NVML error).
    Refused(E),
    /// The state could not be read, written or mirrored: one line.
    State(String),
}

/// Apply `change` to the current state of the topology read from `topology_path`: lock, reload,
/// change, write the state, mirror it into the driver tree. The new state on success.
pub fn transaction<T, E>(
    topology_path: &Path,
    change: impl FnOnce(&mut Topology) -> Result<T, E>,
) -> Result<(T, Topology), ChangeError<E>> {
    let state_err = |what: &str, path: &Path, e: std::io::Error| {
        ChangeError::State(format!("cannot {what} {}: {e}", path.display()))
    };
    let first = load(topology_path).map_err(ChangeError::State)?;
    let state = state_path(topology_path, &first);
    let _lock = lock(&state).map_err(|e| state_err("lock", &state, e))?;
    let before = load(topology_path).map_err(ChangeError::State)?;
    let mut after = before.clone();
    let out = change(&mut after).map_err(ChangeError::Refused)?;
    write_atomic(&state, &after.to_toml(), 0o644).map_err(|e| state_err("write", &state, e))?;
    if let Some(root) = &after.sim_root {
        mirror(Path::new(root), &before, &after).map_err(ChangeError::State)?;
    }
    Ok((out, after))
}

/// An instance's access capability: GPU minor, GPU instance id, compute instance id.
type CapKey = (u32, u32, Option<u32>);

fn capabilities(t: &Topology) -> BTreeSet<CapKey> {
    let mut out = BTreeSet::new();
    for gpu in t.gpus.iter().filter(|g| g.mig) {
        for gi in &gpu.gpu_instances {
            out.insert((gpu.minor, gi.id, None));
            for ci in &gi.compute_instances {
                out.insert((gpu.minor, gi.id, Some(ci.id)));
            }
        }
    }
    out
}

/// Make the driver tree under `root` show `after` where it showed `before`.
pub fn mirror(root: &Path, before: &Topology, after: &Topology) -> Result<(), String> {
    let old = capabilities(before);
    let new = capabilities(after);
    let caps_root = root.join("proc/driver/nvidia/capabilities");
    let dev = match &after.dev_root {
        Some(d) => PathBuf::from(d),
        None => root.join("dev"),
    };
    let err = |what: &str, path: &Path, e: std::io::Error| {
        format!("cannot {what} {}: {e}", path.display())
    };
    // Compute instances go before their GPU instance, and come after it.
    let gone: Vec<&CapKey> = old.difference(&new).collect();
    for key in gone.into_iter().rev() {
        let (dir, minor) = instance_capability(key.0, key.1, key.2);
        let dir = caps_root.join(dir);
        let access = dir.join("access");
        std::fs::remove_file(&access).map_err(|e| err("remove", &access, e))?;
        // The GPU instance's directory goes once its compute instances are gone.
        if key.2.is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        remove_node(&dev, after.majors.caps, minor)?;
    }
    for key in new.difference(&old) {
        let (dir, minor) = instance_capability(key.0, key.1, key.2);
        let access = caps_root.join(dir).join("access");
        write_atomic(&access, &capability_file(minor, CAP_READ_MODE), 0o444)
            .map_err(|e| err("write", &access, e))?;
        make_node(&dev, after.majors.caps, minor)?;
    }
    for f in SIM_ONLY_FILES {
        if f.container_name == crate::global::TOPOLOGY_FILE {
            let path = root.join(f.host_path.trim_start_matches('/'));
            write_atomic(&path, &after.container_toml(f.container_name), 0o644)
                .map_err(|e| err("write", &path, e))?;
        }
    }
    Ok(())
}

fn node_paths(dev: &Path, major: u32, minor: u32) -> (PathBuf, PathBuf) {
    (
        dev.join(format!("nvidia-caps/nvidia-cap{minor}")),
        dev.join(format!("char/{major}:{minor}")),
    )
}

fn make_node(dev: &Path, major: u32, minor: u32) -> Result<(), String> {
    let (node, link) = node_paths(dev, major, minor);
    let _ = std::fs::remove_file(&node);
    let c = std::ffi::CString::new(node.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{} has a NUL byte", node.display()))?;
    let devt = libc::makedev(major, minor);
    // SAFETY: mknod with a NUL-terminated path that outlives the call.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o444, devt) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!("cannot mknod {}: {e}", node.display()));
    }
    std::fs::set_permissions(&node, std::fs::Permissions::from_mode(0o444))
        .map_err(|e| format!("cannot chmod {}: {e}", node.display()))?;
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(format!("../nvidia-caps/nvidia-cap{minor}"), &link)
        .map_err(|e| format!("cannot symlink {}: {e}", link.display()))
}

fn remove_node(dev: &Path, major: u32, minor: u32) -> Result<(), String> {
    let (node, link) = node_paths(dev, major, minor);
    for p in [&node, &link] {
        match std::fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot remove {}: {e}", p.display())),
        }
    }
    Ok(())
}
