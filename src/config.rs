//! migcage's configuration file (TOML).
//!
//! Every path migcage reads of the host goes through one of the roots here, which is what lets
//! the whole program run unchanged against a simulated driver tree. Where the file comes from, in
//! order: `--config PATH`, `$MIGCAGE_CONFIG`, `/etc/migcage/config.toml`; when none of those
//! exists, the built-in defaults (the real host) apply.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::core::cgroup::defaults::Runtime;

/// The default location of the configuration file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/migcage/config.toml";
/// The environment variable that overrides the configuration file's location.
pub const CONFIG_ENV: &str = "MIGCAGE_CONFIG";
/// The default of `host.dev_char_dir`: where runc and systemd look.
pub const DEFAULT_DEV_CHAR_DIR: &str = "/dev/char";
/// The default of `host.systemd_bus`: the system bus, where systemd's manager answers.
pub const DEFAULT_SYSTEMD_BUS: &str = "/run/dbus/system_bus_socket";
/// The default of `host.systemd_timeout_ms` (2 s: a call takes milliseconds on a host; systemd
/// busy with a reload or a start storm can take much longer).
pub const DEFAULT_SYSTEMD_TIMEOUT_MS: u64 = 2_000;
/// The default of `nvml_timeout_ms` (10 s).
pub const DEFAULT_NVML_TIMEOUT_MS: u64 = 10_000;

/// An error loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}; check --config / {CONFIG_ENV}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: {key} = {value:?}: {why}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        value: String,
        why: String,
    },
}

/// What the host is, where it cannot be found out (or is found elsewhere than usual).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// The directory of `<major>:<minor>` links to device nodes that runc's systemd cgroup driver
    /// and systemd read (`/dev/char`), where migcage makes the missing links of the nodes it
    /// grants and doctor checks them.
    pub dev_char_dir: PathBuf,
    /// The socket of the system bus on which the hook tells systemd the container's nodes.
    pub systemd_bus: PathBuf,
    /// How long the hook waits for each of its two calls to systemd (milliseconds, connecting
    /// included) before it gives up with a warning: it is on the container's start path.
    pub systemd_timeout_ms: u64,
    /// The OCI runtimes' versions, as `NAME VERSION` (`"runc 1.1.5"`, `"crun 1.8.1"`): the hook
    /// cannot read a runtime's version without running it, and without it rebuilds only the
    /// default device rules that every version of that runtime adds (runc 1.2.0 to 1.2.3 dropped
    /// `/dev/net/tun`, so a runc container loses it unless its version is stated here).
    pub runtime_versions: Vec<String>,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            dev_char_dir: DEFAULT_DEV_CHAR_DIR.into(),
            systemd_bus: DEFAULT_SYSTEMD_BUS.into(),
            systemd_timeout_ms: DEFAULT_SYSTEMD_TIMEOUT_MS,
            runtime_versions: Vec::new(),
        }
    }
}

impl HostConfig {
    /// The stated runtimes, parsed (entries that do not parse are refused when the file is
    /// loaded, see [`Config::parse`]).
    pub fn stated_runtimes(&self) -> Vec<Runtime> {
        self.runtime_versions
            .iter()
            .filter_map(|s| Runtime::parse(s))
            .collect()
    }
}

/// Who may ask for devices through which source (see the request module).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RequestPolicy {
    /// Honour `NVIDIA_VISIBLE_DEVICES` (and friends) in the container's environment.
    pub accept_env: bool,
    /// Honour the environment variable only for privileged containers (CAP_SYS_ADMIN in the
    /// bounding set). Secure clusters set this with `accept_volume_mounts` or `accept_annotations`
    /// so that a pod cannot name devices the device plugin did not hand it.
    pub env_privileged_only: bool,
    /// Honour `cdi.k8s.io/*`, `nvidia.com/*` and `migcage.io/devices` annotations.
    pub accept_annotations: bool,
    /// Honour the device list passed as mounts under /var/run/nvidia-container-devices.
    pub accept_volume_mounts: bool,
}

impl Default for RequestPolicy {
    fn default() -> Self {
        RequestPolicy {
            accept_env: true,
            env_privileged_only: false,
            accept_annotations: true,
            accept_volume_mounts: true,
        }
    }
}

/// What a container that names a MIG instance (`0:1`, `MIG-...`) gets when another running
/// container already holds it (see the lease module).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ExplicitPolicy {
    /// Refused, naming the holder: one instance, one container, as a cluster admin expects of
    /// MIG. The default.
    #[default]
    Exclusive,
    /// Allowed (Kubernetes time-slicing hands one MIG UUID to several pods); `migcage list`
    /// shows the instance as shared. Requests by profile still never get a held instance.
    Shared,
}

/// Leases of MIG instances (`[leases]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LeaseConfig {
    /// `exclusive` or `shared`.
    pub explicit: ExplicitPolicy,
}

/// MIG instances made and unmade as containers come and go (`[allocation]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AllocationConfig {
    /// A request by profile that finds no free instance of it creates one (GPU instance and its
    /// compute instance) in free capacity, under the lease store's lock. Off by default: it
    /// changes the GPUs' layout, which an operator may manage by hand or with `migcage mig apply`.
    pub create_on_demand: bool,
    /// An instance that `create_on_demand` made is destroyed when its lease ends (poststop,
    /// `migcage release`, or its holder found gone). Off by default: the instance stays, free,
    /// for the next request of its profile.
    pub destroy_on_release: bool,
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// JSON-lines log file; empty for none. Opened in append mode on every run, so logrotate's
    /// plain rename works (copytruncate is not needed).
    pub file: String,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            file: "/var/log/migcage.log".into(),
            level: "info".into(),
        }
    }
}

/// The configuration file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Root of the driver's user-space files (libraries, binaries, firmware); `/` on a host.
    pub driver_root: PathBuf,
    /// Where the host's device nodes live; `/dev` on a host.
    pub dev_root: PathBuf,
    /// Where the host's procfs is mounted; `/proc` on a host.
    pub proc_root: PathBuf,
    /// The NVML library to load (a path, or a soname for the dynamic linker to find).
    pub nvml_library: PathBuf,
    /// Where migcage keeps its runtime state (leases, inventory snapshot).
    pub state_dir: PathBuf,
    /// How long a full discovery may wait for NVML (milliseconds) before it gives up with an
    /// error. NVML's start-up without persistence mode can take seconds; a hook must not wedge a
    /// container start on it.
    pub nvml_timeout_ms: u64,
    /// The OCI runtime `migcage runtime` hands every command to: `runc`, `crun`, or another
    /// runtime with runc's command line; a name looked up on PATH (then /usr/local/sbin,
    /// /usr/local/bin, /usr/sbin, /usr/bin, /sbin, /bin) or an absolute path.
    pub runtime: PathBuf,
    /// `driver_root` is a tree made by `migcage simulate`: discovery then also hands containers
    /// the simulator's own files (`SIM_ONLY_FILES`: the topology the simulated NVML reads inside a
    /// container). Off by default; only the config that `migcage simulate` writes turns it on.
    pub simulated_driver: bool,
    pub requests: RequestPolicy,
    pub log: LogConfig,
    pub leases: LeaseConfig,
    pub allocation: AllocationConfig,
    pub host: HostConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            driver_root: "/".into(),
            dev_root: "/dev".into(),
            proc_root: "/proc".into(),
            nvml_library: "libnvidia-ml.so.1".into(),
            state_dir: "/run/migcage".into(),
            nvml_timeout_ms: DEFAULT_NVML_TIMEOUT_MS,
            runtime: "runc".into(),
            simulated_driver: false,
            requests: RequestPolicy::default(),
            log: LogConfig::default(),
            leases: LeaseConfig::default(),
            allocation: AllocationConfig::default(),
            host: HostConfig::default(),
        }
    }
}

impl Config {
    /// Parse configuration text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e
                .to_string()
                // Not lines(): a lone '\r' the error quotes from the file would start a new line.
                .split(['\n', '\r'])
                .filter(|l| !l.trim().is_empty())
                .collect::<Vec<_>>()
                .join(" "),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Load the configuration: `explicit` (from `--config`) first, then `$MIGCAGE_CONFIG`, then
    /// the default path. A file that was named explicitly must exist; the default may be absent.
    pub fn load(explicit: Option<&Path>) -> Result<(Config, Option<PathBuf>), ConfigError> {
        let from_env = std::env::var_os(CONFIG_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let (path, required) = match (explicit, from_env) {
            (Some(p), _) => (p.to_path_buf(), true),
            (None, Some(p)) => (p, true),
            (None, None) => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok((Config::parse(&text, &path)?, Some(path))),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                Ok((Config::default(), None))
            }
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    /// Refuse values that parse as TOML but mean nothing.
    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        for stated in &self.host.runtime_versions {
            if Runtime::parse(stated).is_none() {
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    key: "host.runtime_versions",
                    value: stated.clone(),
                    why: "not a runtime and its version; write NAME VERSION, such as \"runc 1.1.5\" or \"crun 1.8.1\"".into(),
                });
            }
        }
        for (key, dir) in [
            ("host.dev_char_dir", &self.host.dev_char_dir),
            ("host.systemd_bus", &self.host.systemd_bus),
        ] {
            if !dir.is_absolute() {
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    key,
                    value: dir.display().to_string(),
                    why: "not an absolute path; write the full path".into(),
                });
            }
        }
        Ok(())
    }

    /// A path of the host's procfs, such as `proc_path("driver/nvidia/version")`.
    pub fn proc_path(&self, rel: &str) -> PathBuf {
        self.proc_root.join(rel)
    }

    /// A path under the host's device directory, such as `dev_path("nvidiactl")`.
    pub fn dev_path(&self, rel: &str) -> PathBuf {
        self.dev_root.join(rel)
    }

    /// A path of the driver's files, given as an absolute path on a real host
    /// (`/usr/lib/x86_64-linux-gnu/libcuda.so.1`).
    pub fn driver_path(&self, abs: &str) -> PathBuf {
        self.driver_root.join(abs.trim_start_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_real_host() {
        let c = Config::parse("", Path::new("c.toml")).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.proc_path("devices"), Path::new("/proc/devices"));
        assert_eq!(
            c.driver_path("/usr/bin/nvidia-smi"),
            Path::new("/usr/bin/nvidia-smi")
        );
    }

    #[test]
    fn roots_are_configurable() {
        let c = Config::parse(
            "driver_root = \"/sim\"\ndev_root = \"/sim/dev\"\nproc_root = \"/sim/proc\"\n[log]\nlevel = \"debug\"\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(c.dev_path("nvidia0"), Path::new("/sim/dev/nvidia0"));
        assert_eq!(
            c.driver_path("/usr/bin/nvidia-smi"),
            Path::new("/sim/usr/bin/nvidia-smi")
        );
        assert_eq!(c.log.level, "debug");
        assert_eq!(c.log.file, LogConfig::default().file);
    }

    #[test]
    fn unknown_keys_are_refused_with_the_file_name() {
        let e = Config::parse(
            "driver_rot = \"/\"\n",
            Path::new("/etc/migcage/config.toml"),
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("/etc/migcage/config.toml") && s.contains("driver_rot"),
            "{s}"
        );
        assert!(!s.contains('\n'), "{s}");
    }

    #[test]
    fn host_facts_are_configurable_and_checked() {
        let d = Config::default();
        assert_eq!(d.host.dev_char_dir, Path::new("/dev/char"));
        assert_eq!(d.host.systemd_bus, Path::new("/run/dbus/system_bus_socket"));
        assert!(d.host.stated_runtimes().is_empty());
        let c = Config::parse(
            "[host]\ndev_char_dir = \"/x/char\"\nsystemd_bus = \"/x/bus\"\nruntime_versions = [\"runc 1.1.5\", \"crun v1.8.1\"]\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(c.host.dev_char_dir, Path::new("/x/char"));
        assert_eq!(c.host.systemd_bus, Path::new("/x/bus"));
        assert_eq!(
            c.host.stated_runtimes(),
            vec![
                Runtime::parse("runc 1.1.5").unwrap(),
                Runtime::parse("crun 1.8.1").unwrap()
            ]
        );
        for (text, want) in [
            (
                "[host]\nruntime_versions = [\"runc\"]\n",
                "config file c.toml: host.runtime_versions = \"runc\": not a runtime and its version; write NAME VERSION, such as \"runc 1.1.5\" or \"crun 1.8.1\"",
            ),
            (
                "[host]\nruntime_versions = [\"youki 0.3.0\"]\n",
                "config file c.toml: host.runtime_versions = \"youki 0.3.0\": not a runtime",
            ),
            (
                "[host]\ndev_char_dir = \"dev/char\"\n",
                "config file c.toml: host.dev_char_dir = \"dev/char\": not an absolute path; write the full path",
            ),
        ] {
            let e = Config::parse(text, Path::new("c.toml")).unwrap_err().to_string();
            assert!(e.starts_with(want), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn nvml_timeout_is_configurable() {
        assert_eq!(Config::default().nvml_timeout_ms, DEFAULT_NVML_TIMEOUT_MS);
        let c = Config::parse("nvml_timeout_ms = 250\n", Path::new("c.toml")).unwrap();
        assert_eq!(c.nvml_timeout_ms, 250);
    }

    #[test]
    fn lease_policy_defaults_to_exclusive() {
        assert_eq!(Config::default().leases.explicit, ExplicitPolicy::Exclusive);
        let c = Config::parse("[leases]\nexplicit = \"shared\"\n", Path::new("c.toml")).unwrap();
        assert_eq!(c.leases.explicit, ExplicitPolicy::Shared);
        let e = Config::parse("[leases]\nexplicit = \"some\"\n", Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("exclusive"), "{e}");
    }

    /// Found by the `config` fuzz target: toml quotes the offending line, and a lone carriage
    /// return in it made the message two lines.
    #[test]
    fn a_carriage_return_in_the_file_stays_on_one_line() {
        for text in ["0\r>", "driver_root = \"/\"\r\nx\r= 1\r\n"] {
            let s = Config::parse(text, Path::new("c.toml"))
                .unwrap_err()
                .to_string();
            assert!(!s.contains(['\n', '\r']), "{s:?}");
            assert!(s.starts_with("config file c.toml: "), "{s:?}");
        }
    }

    /// `migcage simulate` writes its config.toml itself (it does not depend on migcage): the text
    /// is exactly this config's, every key in migcage's layout, so scripts and tests that rewrite
    /// one line of it find the line.
    #[test]
    fn the_simulators_config_is_this_config() {
        let root = Path::new("/sim");
        let text = migcage_simulate::config_text(root).unwrap();
        let want = Config {
            driver_root: root.into(),
            dev_root: "/sim/dev".into(),
            proc_root: "/sim/proc".into(),
            nvml_library: "/sim/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1".into(),
            state_dir: "/sim/run/migcage".into(),
            simulated_driver: true,
            log: LogConfig {
                file: "/sim/migcage.log".into(),
                ..LogConfig::default()
            },
            ..Config::default()
        };
        assert_eq!(Config::parse(&text, Path::new("c.toml")).unwrap(), want);
        assert_eq!(text, toml::to_string_pretty(&want).unwrap());
        assert!(!Config::default().simulated_driver);
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let e = Config::load(Some(Path::new("/nonexistent/migcage.toml"))).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/migcage.toml"));
    }
}
