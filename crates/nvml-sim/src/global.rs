//! The process-wide library state: `nvmlInit*` builds a [`Sim`] (reference counted like the
//! real library: every successful init needs its own shutdown), `nvmlShutdown` drops it, and
//! every other call borrows it.

use std::ffi::{CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use migcage_topology::Topology;

use crate::errors::{self, NvResult, Ret};
use crate::state::{InitError, Sim};
use crate::{persist, visibility};

/// Environment variable naming the topology file.
pub const TOPOLOGY_ENV: &str = "MIGCAGE_SIM_TOPOLOGY";
/// File name looked for next to the loaded library.
pub const TOPOLOGY_FILE: &str = "nvidia-sim-topology.toml";

struct Global {
    refcount: u32,
    sim: Option<Arc<Sim>>,
    /// The topology file the state was loaded from (changes persist beside it).
    path: Option<PathBuf>,
}

static GLOBAL: Mutex<Global> = Mutex::new(Global {
    refcount: 0,
    sim: None,
    path: None,
});

fn lock() -> MutexGuard<'static, Global> {
    // A panic while holding the lock was caught at the FFI boundary; the state itself is
    // replaced whole, never left half-written, so a poisoned lock is still consistent.
    GLOBAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The current state, or `UNINITIALIZED`.
pub fn current() -> NvResult<Arc<Sim>> {
    lock().sim.clone().ok_or(errors::UNINITIALIZED)
}

/// `nvmlInit*`: the first call loads the topology and builds the state; later calls only count.
/// `function` is the exported name, for injected call faults.
pub fn init(function: &str) -> Ret {
    let mut global = lock();
    if let Some(sim) = &global.sim {
        if let Err(code) = sim.fault(function) {
            return code;
        }
        global.refcount += 1;
        return errors::SUCCESS;
    }
    match load_and_build(function) {
        Ok((sim, path)) => {
            global.sim = Some(Arc::new(sim));
            global.path = Some(path);
            global.refcount = 1;
            errors::SUCCESS
        }
        Err(e) => {
            if let Some(message) = e.message {
                eprintln!("libnvidia-ml.so.1 (migcage simulator): {message}");
            }
            e.code
        }
    }
}

/// `nvmlShutdown`: one fewer user; the last one drops the state.
pub fn shutdown() -> Ret {
    let mut global = lock();
    if global.refcount == 0 {
        return errors::UNINITIALIZED;
    }
    global.refcount -= 1;
    if global.refcount == 0 {
        global.sim = None;
    }
    errors::SUCCESS
}

/// Change the MIG layout: `change` runs on the current persisted state under its lock (see
/// [`persist`]), and the state of this process is rebuilt from the result. Inside a container
/// (device-node visibility, no simulated root) nothing may change: `NO_PERMISSION`, as for an
/// unprivileged caller of the real library.
pub fn mutate<T>(change: impl FnOnce(&mut Topology) -> NvResult<T>) -> NvResult<T> {
    let mut global = lock();
    let sim = global.sim.clone().ok_or(errors::UNINITIALIZED)?;
    let path = global.path.clone().ok_or(errors::UNINITIALIZED)?;
    if sim.topology().visibility == migcage_topology::Visibility::DeviceNodes {
        return Err(errors::NO_PERMISSION);
    }
    let (out, topo) = match persist::transaction(&path, change) {
        Ok(done) => done,
        Err(persist::ChangeError::Refused(code)) => return Err(code),
        Err(persist::ChangeError::State(message)) => {
            eprintln!("libnvidia-ml.so.1 (migcage simulator): {message}");
            return Err(errors::UNKNOWN);
        }
    };
    let rebuilt = Sim::build(topo, &visibility::probe).map_err(|e| e.code)?;
    global.sim = Some(Arc::new(rebuilt));
    Ok(out)
}

fn load_and_build(function: &str) -> Result<(Sim, PathBuf), InitError> {
    let path = topology_path()?;
    let topo = persist::load(&path).map_err(|message| InitError {
        code: errors::DRIVER_NOT_LOADED,
        message: Some(message),
    })?;
    if topo.faults.init_delay_ms > 0 {
        std::thread::sleep(Duration::from_millis(topo.faults.init_delay_ms));
    }
    if let Some(name) = &topo.faults.init_error {
        let code = errors::code_from_name(name).ok_or_else(|| InitError {
            code: errors::DRIVER_NOT_LOADED,
            message: Some(format!(
                "topology {}: faults.init_error = {name:?} is not an NVML error name",
                topo.name
            )),
        })?;
        return Err(InitError {
            code,
            message: None,
        });
    }
    let sim = Sim::build(topo, &visibility::probe)?;
    sim.fault(function).map_err(|code| InitError {
        code,
        message: None,
    })?;
    Ok((sim, path))
}

/// `$MIGCAGE_SIM_TOPOLOGY`, else `nvidia-sim-topology.toml` next to this library: in the
/// directory it was loaded from (where a `libnvidia-ml.so.1` symlink sits), then in the
/// directory of the file that path resolves to.
fn topology_path() -> Result<PathBuf, InitError> {
    if let Some(p) = std::env::var_os(TOPOLOGY_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let candidates: Vec<PathBuf> = library_dirs()
        .into_iter()
        .map(|d| d.join(TOPOLOGY_FILE))
        .collect();
    if let Some(found) = candidates.iter().find(|p| p.exists()) {
        return Ok(found.clone());
    }
    let looked = if candidates.is_empty() {
        format!("<directory of this library>/{TOPOLOGY_FILE}")
    } else {
        candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" nor ")
    };
    Err(InitError {
        code: errors::DRIVER_NOT_LOADED,
        message: Some(format!(
            "no topology: ${TOPOLOGY_ENV} is not set and {looked} does not exist"
        )),
    })
}

/// The directories of the file this code was loaded from (the .so, or the executable when
/// linked in statically), found with `dladdr` on one of our own functions: as loaded, then
/// with symlinks resolved when that differs.
fn library_dirs() -> Vec<PathBuf> {
    let mut info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    let ours = library_dirs as fn() -> Vec<PathBuf>;
    // SAFETY: dladdr only inspects the address (a function of this object) and writes `info`,
    // a valid, exclusively borrowed Dl_info.
    let found = unsafe { libc::dladdr(ours as *const libc::c_void, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return Vec::new();
    }
    // SAFETY: on success dli_fname points to the loader's NUL-terminated path of the object,
    // which lives as long as the object stays loaded (at least this call).
    let fname = unsafe { CStr::from_ptr(info.dli_fname) };
    let path = Path::new(OsStr::from_bytes(fname.to_bytes()));
    let mut dirs: Vec<PathBuf> = path.parent().map(Path::to_path_buf).into_iter().collect();
    if let Some(real) = std::fs::canonicalize(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        if !dirs.contains(&real) {
            dirs.push(real);
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_dirs_include_where_this_code_lives() {
        // Linked into the test executable, dladdr names the executable.
        let exe_dir = std::env::current_exe().unwrap().canonicalize().unwrap();
        assert!(
            library_dirs()
                .iter()
                .any(|d| Some(d.as_path()) == exe_dir.parent()),
            "{:?}",
            library_dirs()
        );
    }
}
