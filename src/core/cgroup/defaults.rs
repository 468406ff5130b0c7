//! The device rules each OCI runtime adds to every container on its own, per runtime and version.
//!
//! On cgroup v2 the hook replaces the runtime's device program, so the replacement must carry the
//! runtime's implicit rules, and never more than they allow. They differ:
//!
//! - runc (`libcontainer/specconv/spec_linux.go`, `AllowedDevices`): `c *:* m`, `b *:* m`,
//!   1:3, 1:8, 1:7, 5:0, 1:5, 1:9 (each dropped when a `linux.devices` entry has its path),
//!   136:*, 5:2 and tun/tap 10:200, which 1.2.0 (from 1.2.0-rc.1) to 1.2.3 left out and 1.2.4
//!   restored (runc PR 3468, then 4555/4556);
//! - crun (`src/libcrun/cgroup-resources.c`, `default_devices`): the same without paths (a
//!   `linux.devices` entry removes none) plus `/dev/console` 5:1; tun/tap was removed in 1.5
//!   (NEWS: "remove tun/tap from the default allow list") and put back by crun PR 1637 (merged
//!   2025-01-10, after 1.19): this table counts it back only from 1.21, so a 1.20 whose list is
//!   not checked here gets the narrower set, never the wider.
//!
//! Both append these after the spec's `linux.resources.devices` (so a spec cannot deny them).
//! When the version is not known, the rules are those every version of that runtime adds; when the
//! runtime is not known, those every known runtime adds: the intersection, never wider than the
//! runtime's own.

use crate::core::edits::{Access, DeviceRule, DeviceType};

/// A runtime version, `major.minor.patch`; a pre-release counts as its release (runc's tun/tap
/// removal came with 1.2.0-rc.1, so `1.2.0-rc.1` belongs with 1.2.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    /// Parse `1.2.3`, `v1.2.3`, `1.2.0-rc.1`, `1.1.5+ds1`, `1.8` (patch 0); None for anything else.
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim().trim_start_matches('v');
        let core = s.split(['-', '+', '~']).next()?;
        let mut parts = core.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = match parts.next() {
            Some(p) => p.parse().ok()?,
            None => 0,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Version(major, minor, patch))
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// Which runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Runc,
    Crun,
}

/// The runtime that made the container's cgroup, as far as the hook could tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// The runtime, and its version when known.
    Known(Kind, Option<Version>),
    /// Not told apart: the rules every known runtime adds.
    Unknown,
}

impl Runtime {
    /// runc 1.1, what the rule list was built for before runtimes were told apart.
    pub const RUNC_1_1: Runtime = Runtime::Known(Kind::Runc, Some(Version(1, 1, 0)));

    /// The runtime an executable's file name says (`runc`, `runc.amd64`, `docker-runc`, `crun`);
    /// [`Runtime::Unknown`] for any other.
    pub fn from_exe_name(name: &str, version: Option<Version>) -> Runtime {
        let is = |rt: &str| {
            name == rt
                || name
                    .strip_prefix(rt)
                    .is_some_and(|r| r.starts_with(['.', '-']))
                || name == format!("docker-{rt}")
        };
        if is("runc") {
            Runtime::Known(Kind::Runc, version)
        } else if is("crun") {
            Runtime::Known(Kind::Crun, version)
        } else {
            Runtime::Unknown
        }
    }
}

impl Runtime {
    /// Parse an operator's `"runc 1.1.5"` or `"crun 1.8.1"` (what a config key naming the
    /// host's runtime would hold); None for anything else.
    pub fn parse(s: &str) -> Option<Runtime> {
        let (name, version) = s.trim().split_once(char::is_whitespace)?;
        let version = Version::parse(version)?;
        match Runtime::from_exe_name(name, Some(version)) {
            Runtime::Unknown => None,
            known => Some(known),
        }
    }

    /// This (detected) runtime with the version of the first of `stated` (the config's
    /// `host.runtime_versions`) that names the same runtime, when this one has no version;
    /// otherwise unchanged. A statement never changes which runtime was detected, nor makes an
    /// unknown one known: a host may run both.
    pub fn refined_by(self, stated: &[Runtime]) -> Runtime {
        let Runtime::Known(kind, None) = self else {
            return self;
        };
        stated
            .iter()
            .find_map(|s| match s {
                Runtime::Known(said, Some(v)) if *said == kind => {
                    Some(Runtime::Known(kind, Some(*v)))
                }
                _ => None,
            })
            .unwrap_or(self)
    }
}

/// One implicit rule and the device path whose `linux.devices` entry removes it (runc only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultDevice {
    pub path: Option<&'static str>,
    pub rule: DeviceRule,
}

const fn allow(
    kind: DeviceType,
    major: Option<u32>,
    minor: Option<u32>,
    access: Access,
) -> DeviceRule {
    DeviceRule {
        allow: true,
        kind,
        major,
        minor,
        access,
    }
}

const MKNOD: Access = Access {
    read: false,
    write: false,
    mknod: true,
};

const fn dev(path: Option<&'static str>, major: u32, minor: Option<u32>) -> DefaultDevice {
    DefaultDevice {
        path,
        rule: allow(DeviceType::Char, Some(major), minor, Access::ALL),
    }
}

/// The `m` on every char and block device both runtimes start with.
const MKNOD_ANY: [DefaultDevice; 2] = [
    DefaultDevice {
        path: None,
        rule: allow(DeviceType::Char, None, None, MKNOD),
    },
    DefaultDevice {
        path: None,
        rule: allow(DeviceType::Block, None, None, MKNOD),
    },
];

/// tun/tap, `/dev/net/tun`: the default that comes and goes between versions.
pub const TUN: DefaultDevice = dev(None, 10, Some(200));

/// runc's `AllowedDevices`, in its order (confirmed against the `devices.list` of a runc 1.1.5
/// container: `c *:* m`, `b *:* m`, 1:3, 1:8, 1:7, 5:0, 1:5, 1:9, 136:*, 5:2, 10:200).
pub const RUNC: [DefaultDevice; 11] = [
    MKNOD_ANY[0],
    MKNOD_ANY[1],
    dev(Some("/dev/null"), 1, Some(3)),
    dev(Some("/dev/random"), 1, Some(8)),
    dev(Some("/dev/full"), 1, Some(7)),
    dev(Some("/dev/tty"), 5, Some(0)),
    dev(Some("/dev/zero"), 1, Some(5)),
    dev(Some("/dev/urandom"), 1, Some(9)),
    dev(None, 136, None),  // /dev/pts/*
    dev(None, 5, Some(2)), // /dev/ptmx
    TUN,
];

/// crun's `default_devices`, in its order: runc's numbers without paths, plus 5:1 (confirmed
/// against the `devices.list` of a crun 1.8.1 container on cgroup v1 here: `c *:* m`, `b *:* m`,
/// 1:3, 1:8, 1:7, 5:0, 1:5, 1:9, 5:1, 136:*, 5:2, and no 10:200; its v2 program is built from the
/// same list).
pub const CRUN: [DefaultDevice; 12] = [
    MKNOD_ANY[0],
    MKNOD_ANY[1],
    dev(None, 1, Some(3)),
    dev(None, 1, Some(8)),
    dev(None, 1, Some(7)),
    dev(None, 5, Some(0)),
    dev(None, 1, Some(5)),
    dev(None, 1, Some(9)),
    dev(None, 5, Some(1)), // /dev/console
    dev(None, 136, None),
    dev(None, 5, Some(2)),
    TUN,
];

/// One row of the table: a runtime's versions `from..until` and whether they add tun/tap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub from: Version,
    /// Exclusive; None: every later version.
    pub until: Option<Version>,
    pub tun: bool,
}

const V0: Version = Version(0, 0, 0);

/// Every known runtime version range.
pub const TABLE: [Entry; 6] = [
    Entry {
        kind: Kind::Runc,
        from: V0,
        until: Some(Version(1, 2, 0)),
        tun: true,
    },
    Entry {
        kind: Kind::Runc,
        from: Version(1, 2, 0),
        until: Some(Version(1, 2, 4)),
        tun: false,
    },
    Entry {
        kind: Kind::Runc,
        from: Version(1, 2, 4),
        until: None,
        tun: true,
    },
    Entry {
        kind: Kind::Crun,
        from: V0,
        until: Some(Version(1, 5, 0)),
        tun: true,
    },
    Entry {
        kind: Kind::Crun,
        from: Version(1, 5, 0),
        until: Some(Version(1, 21, 0)),
        tun: false,
    },
    Entry {
        kind: Kind::Crun,
        from: Version(1, 21, 0),
        until: None,
        tun: true,
    },
];

impl Entry {
    fn covers(&self, v: Version) -> bool {
        self.from <= v && self.until.is_none_or(|u| v < u)
    }

    /// The rules this entry's runtime adds, less those `linux.devices` paths remove.
    pub fn rules(&self, device_paths: &[&str]) -> Vec<DeviceRule> {
        let list: &[DefaultDevice] = match self.kind {
            Kind::Runc => &RUNC,
            Kind::Crun => &CRUN,
        };
        list.iter()
            .filter(|d| self.tun || **d != TUN)
            .filter(|d| !matches!(d.path, Some(p) if device_paths.contains(&p)))
            .map(|d| d.rule)
            .collect()
    }
}

/// The table rows that may describe `runtime`: one for a known version, all of that runtime's
/// for an unknown one, every row for an unknown runtime.
pub fn entries(runtime: Runtime) -> Vec<Entry> {
    TABLE
        .iter()
        .filter(|e| match runtime {
            Runtime::Known(kind, Some(v)) => e.kind == kind && e.covers(v),
            Runtime::Known(kind, None) => e.kind == kind,
            Runtime::Unknown => true,
        })
        .copied()
        .collect()
}

/// The implicit rules `runtime` adds after the spec's, given the paths of the spec's
/// `linux.devices`: those every row [`entries`] gives adds (the intersection), in the order of
/// the first.
pub fn implicit_rules(runtime: Runtime, device_paths: &[&str]) -> Vec<DeviceRule> {
    let rows: Vec<Vec<DeviceRule>> = entries(runtime)
        .iter()
        .map(|e| e.rules(device_paths))
        .collect();
    let Some((first, rest)) = rows.split_first() else {
        return Vec::new();
    };
    first
        .iter()
        .filter(|r| rest.iter().all(|other| other.contains(r)))
        .copied()
        .collect()
}

#[cfg(test)]
mod tests;
