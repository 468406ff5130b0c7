//! Doctor's checks: pure functions from [`Facts`] to findings, each with the fix for it. No I/O:
//! tests build facts by hand.

mod engines;
mod nodes;
#[cfg(test)]
mod tests;

use serde::Serialize;

use crate::host::inventory;

use super::facts::*;
use engines::{check_cdi, check_hook_files, check_runtimes};
use nodes::{check_cgroup, check_char_links, check_nodes};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub status: Status,
    /// What was checked: `driver`, `NVML`, `MIG mode (GPU 0)`, `caps node`, ...
    pub check: String,
    /// What was found.
    pub found: String,
    /// What to do about it; empty when nothing needs doing.
    pub fix: String,
}

impl Check {
    pub(super) fn new(status: Status, check: impl Into<String>, found: impl Into<String>) -> Check {
        Check {
            status,
            check: check.into(),
            found: found.into(),
            fix: String::new(),
        }
    }

    pub(super) fn ok(check: impl Into<String>, found: impl Into<String>) -> Check {
        Check::new(Status::Ok, check, found)
    }

    pub(super) fn warn(
        check: impl Into<String>,
        found: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check::new(Status::Warn, check, found).fix(fix)
    }

    pub(super) fn fail(
        check: impl Into<String>,
        found: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check::new(Status::Fail, check, found).fix(fix)
    }

    pub(super) fn fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = fix.into();
        self
    }
}

/// Every check, in the order an admin would go through them.
pub fn evaluate(f: &Facts) -> Vec<Check> {
    let mut out = vec![check_config(f)];
    out.push(check_driver(f));
    out.extend(check_nvml(f));
    out.extend(check_nodes(f));
    out.push(check_cgroup(f));
    out.extend(check_char_links(f));
    out.extend(check_runtimes(f));
    out.extend(check_hook_files(f));
    out.extend(check_cdi(f));
    out.push(check_state_dir(f));
    out.push(check_log(f));
    out
}

fn check_config(f: &Facts) -> Check {
    match &f.config {
        ConfigFact::Loaded(Some(p)) => Check::ok("config", format!("{}", p.display())),
        ConfigFact::Loaded(None) => Check::ok(
            "config",
            format!(
                "no {}: built-in defaults (the real host's /dev, /proc, libnvidia-ml.so.1)",
                crate::config::DEFAULT_CONFIG_PATH
            ),
        ),
        ConfigFact::Broken(e) => Check::fail(
            "config",
            e.clone(),
            "fix the file (`migcage config` prints the keys in effect; the package ships a documented default); doctor went on with the defaults",
        ),
    }
}

fn check_driver(f: &Facts) -> Check {
    let proc_root = f.roots.proc_root.display();
    match &f.driver {
        DriverFact::Loaded(p) => {
            let mut found = format!(
                "loaded, version {} ({}), {} GPU(s) in {}",
                p.driver_version,
                inventory::version_path(&f.roots).display(),
                p.gpus.len(),
                f.roots.proc_path("driver/nvidia/gpus").display()
            );
            found.push_str(&match (p.majors.uvm, p.majors.caps) {
                (Some(u), Some(c)) => format!("; majors frontend {}, uvm {u}, caps {c}", p.majors.frontend),
                _ => format!("; majors frontend {}", p.majors.frontend),
            });
            if p.majors.uvm.is_none() {
                return Check::warn(
                    "driver",
                    format!("{found}; nvidia-uvm is not loaded (no nvidia-uvm in /proc/devices)"),
                    "CUDA needs it: modprobe nvidia-uvm (or nvidia-modprobe -u -c0)",
                );
            }
            if p.mig_minors.is_none() || p.majors.caps.is_none() {
                return Check::warn(
                    "driver",
                    format!("{found}; nvidia-caps is not loaded (no {} or no nvidia-caps major)", inventory::mig_minors_path(&f.roots).display()),
                    "MIG devices need it: load a driver with MIG support (R450 or later) and run nvidia-modprobe -f -c0",
                );
            }
            Check::ok("driver", found)
        }
        DriverFact::NotLoaded { path } => Check::fail(
            "driver",
            format!("not loaded: {} is missing", path.display()),
            format!("load the nvidia kernel module (modprobe nvidia), or set proc_root in the migcage config (now {proc_root})"),
        ),
        DriverFact::Unreadable(e) => Check::fail(
            "driver",
            e.clone(),
            "check that the driver's procfs is complete, or set proc_root in the migcage config",
        ),
    }
}

fn check_nvml(f: &Facts) -> Vec<Check> {
    let mut out = Vec::new();
    match &f.nvml {
        NvmlFact::Loaded {
            library,
            driver_version,
            gpus,
            elapsed,
        } => {
            let found = format!(
                "{} loaded in {} ms: driver {driver_version}, {} GPU(s)",
                library.display(),
                elapsed.as_millis(),
                gpus.len()
            );
            let slow = elapsed.as_millis() * 2 > u128::from(f.roots.nvml_timeout_ms);
            out.push(if slow {
                Check::warn(
                    "NVML",
                    format!("{found}, more than half of nvml_timeout_ms ({} ms)", f.roots.nvml_timeout_ms),
                    "enable persistence mode (nvidia-smi -pm 1, or run nvidia-persistenced) so that container starts do not wait for NVML",
                )
            } else {
                Check::ok("NVML", found)
            });
            match &f.inventory {
                Some(Ok(inv)) => out.push(Check::ok(
                    "inventory",
                    format!(
                        "NVML and {} agree: {} MIG device(s)",
                        f.roots.proc_root.display(),
                        inv.gpus.iter().map(|g| g.mig_devices.len()).sum::<usize>()
                    ),
                )),
                Some(Err(e)) => out.push(Check::fail(
                    "inventory",
                    e.clone(),
                    "containers that ask for a device fail until NVML and the driver's procfs agree",
                )),
                None => {}
            }
            for g in gpus {
                let check = format!("MIG mode (GPU {})", g.index);
                let what = format!("{} {} (minor {})", g.name, g.uuid, g.minor);
                out.push(match (g.mig_enabled, g.mig_devices.len()) {
                    (false, _) => Check::ok(check, format!("{what}: MIG disabled; containers get the whole GPU")),
                    (true, 0) => Check::warn(
                        check,
                        format!("{what}: MIG enabled but no MIG devices exist"),
                        format!("create instances: nvidia-smi mig -i {} -cgi <profiles> -C", g.index),
                    ),
                    (true, n) => Check::ok(
                        check,
                        format!(
                            "{what}: MIG enabled, {n} MIG device(s): {}",
                            g.mig_devices
                                .iter()
                                .map(|m| format!("{}:{} ({})", g.index, m.index, m.profile))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ),
                });
            }
        }
        NvmlFact::TimedOut { library, timeout_ms } => out.push(Check::fail(
            "NVML",
            format!("{} did not answer within {timeout_ms} ms (nvml_timeout_ms)", library.display()),
            "NVML start-up stalls without persistence mode or with a wedged GPU: enable it (nvidia-smi -pm 1, or nvidia-persistenced), check dmesg, or raise nvml_timeout_ms",
        )),
        NvmlFact::Failed(e) => out.push(Check::fail(
            "NVML",
            e.clone(),
            format!("now: nvml_library = {}", f.roots.nvml_library.display()),
        )),
    }
    out
}

fn check_state_dir(f: &Facts) -> Check {
    let p = f.roots.state_dir.display();
    match &f.state_dir {
        WritableFact::Writable => Check::ok("state dir", format!("{p} is writable")),
        WritableFact::Missing { creatable: true, ancestor } => Check::ok(
            "state dir",
            format!("{p} does not exist yet; migcage creates it ({} is writable)", ancestor.display()),
        ),
        WritableFact::Missing { creatable: false, ancestor } => Check::fail(
            "state dir",
            format!("{p} does not exist and {} is not a writable directory", ancestor.display()),
            "create it (mkdir -p, owned by root), or set state_dir in the migcage config",
        ),
        WritableFact::NotADirectory => Check::fail(
            "state dir",
            format!("{p} (or a directory above it) is not a directory"),
            "remove what is in the way, or set state_dir in the migcage config",
        ),
        WritableFact::NotWritable(e) => Check::fail(
            "state dir",
            format!("cannot create a file in {p}: {e}"),
            "leases and the inventory snapshot live there: run as root, remount it read-write, or set state_dir",
        ),
    }
}

fn check_log(f: &Facts) -> Check {
    let Some((file, w)) = &f.log_dir else {
        return Check::ok("log", "off (log.file is empty)");
    };
    if f.roots
        .log
        .level
        .parse::<tracing_subscriber::filter::LevelFilter>()
        .is_err()
    {
        return Check::warn(
            "log",
            format!(
                "log.level {:?} is not a level; info is used",
                f.roots.log.level
            ),
            "write error, warn, info, debug or trace",
        );
    }
    let fix = "the hook then runs without a log: create the directory, or set log.file in the migcage config";
    match w {
        WritableFact::Writable => Check::ok(
            "log",
            format!(
                "{} (JSON lines, appended; level {})",
                file.display(),
                f.roots.log.level
            ),
        ),
        WritableFact::Missing { .. } | WritableFact::NotADirectory => Check::warn(
            "log",
            format!("the directory of {} does not exist", file.display()),
            fix,
        ),
        WritableFact::NotWritable(e) => Check::warn(
            "log",
            format!("cannot write next to {}: {e}", file.display()),
            fix,
        ),
    }
}
