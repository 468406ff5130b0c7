//! The cgroup finder's parsers (src/host/cgroup.rs): `/proc/<pid>/cgroup` and mountinfo, then
//! the decision which directory governs device access. Input: the cgroup file, a NUL byte, the
//! mountinfo file. A directory found is always under a mount point of the mountinfo, and never
//! climbs out of it.
#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use migcage::host::cgroup::{self as find, DeviceCgroup};
use migcage_fuzz::assert_one_line;

fuzz_target!(|data: &[u8]| {
    let (cg, mi) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b""[..]),
    };
    let (Ok(cg), Ok(mi)) = (std::str::from_utf8(cg), std::str::from_utf8(mi)) else {
        return;
    };
    for field in mi.split(' ') {
        let _ = find::unescape_mount_field(field);
    }
    let (cgf, mif) = (
        Path::new("/proc/1/cgroup"),
        Path::new("/proc/self/mountinfo"),
    );
    let cgroups = match find::parse_proc_cgroup(cg, cgf) {
        Ok(c) => c,
        Err(e) => return assert_one_line("parse_proc_cgroup", &e.to_string()),
    };
    let mounts = match find::parse_mountinfo(mi, mif) {
        Ok(m) => m,
        Err(e) => return assert_one_line("parse_mountinfo", &e.to_string()),
    };
    match find::device_cgroup_from(&cgroups, &mounts, cgf, mif) {
        Ok(DeviceCgroup::V1(dir) | DeviceCgroup::V2(dir)) => {
            assert!(dir.is_absolute(), "{dir:?} is not absolute");
            let base = mounts
                .iter()
                .filter(|m| dir.starts_with(&m.mount_point))
                .max_by_key(|m| m.mount_point.as_os_str().len())
                .unwrap_or_else(|| panic!("{dir:?} is under no mount point"));
            let rel = dir.strip_prefix(&base.mount_point).unwrap();
            assert!(
                rel.components().all(|c| matches!(c, Component::Normal(_))),
                "{dir:?} climbs out of {:?}",
                base.mount_point
            );
        }
        Err(e) => assert_one_line("device_cgroup_from", &e.to_string()),
    }
});
