//! Which cgroup governs a process's device access, and where its directory is.
//!
//! A hierarchy line with `devices` in its controller list, whose hierarchy is mounted (and not
//! hidden by a later mount) as cgroup v1, makes the process a v1 process for devices, even on a
//! hybrid host that also has cgroup2 mounted. Otherwise the `0::/path` line with a visible cgroup2
//! mount makes it v2. The parsers are pure; [`find_device_cgroup`] reads the two files.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

/// An error finding a process's device cgroup; every variant names the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("no device cgroup for the process: {cgroup_file} and {mountinfo_file} show {detail}")]
    NotFound {
        cgroup_file: PathBuf,
        mountinfo_file: PathBuf,
        detail: String,
    },
}

/// One line of `/proc/<pid>/cgroup`: `hierarchy-ID:controller-list:cgroup-path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupLine {
    pub hierarchy_id: u32,
    /// Controllers (and `name=...` entries); empty for the v2 line `0::/path`.
    pub controllers: Vec<String>,
    /// Absolute path inside the hierarchy, relative to the reader's cgroup namespace.
    pub path: PathBuf,
}

/// One line of a mountinfo file (see proc(5)), with `root` and `mount_point` unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountLine {
    pub mount_id: u32,
    pub parent_id: u32,
    /// The directory of the filesystem that is the root of this mount.
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub super_options: Vec<String>,
}

/// The cgroup that governs a process's device access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceCgroup {
    /// A directory of the cgroup v1 devices controller (it has `devices.allow`).
    V1(PathBuf),
    /// A cgroup2 directory (device access is an eBPF program attached to it).
    V2(PathBuf),
}

fn parse_err(path: &Path, line: usize, message: impl Into<String>) -> FindError {
    FindError::Parse {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

/// Parse the text of `/proc/<pid>/cgroup`; `file` names it in errors.
pub fn parse_proc_cgroup(text: &str, file: &Path) -> Result<Vec<CgroupLine>, FindError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.is_empty() {
            continue;
        }
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(parse_err(
                file,
                n,
                format!("expected ID:CONTROLLERS:PATH, got {line:?}"),
            ));
        };
        let hierarchy_id = id
            .parse()
            .map_err(|_| parse_err(file, n, format!("bad hierarchy id {id:?}")))?;
        let path = PathBuf::from(path);
        if !path.is_absolute() {
            return Err(parse_err(
                file,
                n,
                format!("cgroup path {path:?} is not absolute"),
            ));
        }
        let controllers = if ctrls.is_empty() {
            Vec::new()
        } else {
            ctrls.split(',').map(str::to_owned).collect()
        };
        out.push(CgroupLine {
            hierarchy_id,
            controllers,
            path,
        });
    }
    Ok(out)
}

/// Undo the octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` backslash) the kernel
/// writes in mountinfo path fields. A backslash not followed by three octal digits stays as is.
pub fn unescape_mount_field(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = oct
                    .iter()
                    .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(OsString::from_vec(out))
}

/// Parse the text of a mountinfo file; `file` names it in errors.
pub fn parse_mountinfo(text: &str, file: &Path) -> Result<Vec<MountLine>, FindError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(' ').collect();
        let sep = fields
            .iter()
            .position(|f| *f == "-")
            .filter(|&p| p >= 6 && fields.len() >= p + 3)
            .ok_or_else(|| parse_err(file, n, format!("malformed mountinfo line {line:?}")))?;
        let num = |s: &str, what: &str| {
            s.parse::<u32>()
                .map_err(|_| parse_err(file, n, format!("bad {what} {s:?}")))
        };
        out.push(MountLine {
            mount_id: num(fields[0], "mount id")?,
            parent_id: num(fields[1], "parent id")?,
            root: unescape_mount_field(fields[3]),
            mount_point: unescape_mount_field(fields[4]),
            fs_type: fields[sep + 1].to_owned(),
            super_options: fields
                .get(sep + 3)
                .map(|o| o.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
        });
    }
    Ok(out)
}

/// The mounts that are not hidden by a later mount on their mount point or on a directory above
/// it (as when cgroup2 is mounted over a hybrid host's `/sys/fs/cgroup` tmpfs). Mountinfo lists
/// mounts in the order they were made.
pub fn visible_mounts(mounts: &[MountLine]) -> Vec<&MountLine> {
    let by_id: HashMap<u32, &MountLine> = mounts.iter().map(|m| (m.mount_id, m)).collect();
    let is_ancestor = |anc: u32, m: &MountLine| {
        let mut cur = m.parent_id;
        for _ in 0..mounts.len() {
            if cur == anc {
                return true;
            }
            match by_id.get(&cur) {
                Some(p) if p.parent_id != cur => cur = p.parent_id,
                _ => return false,
            }
        }
        false
    };
    mounts
        .iter()
        .enumerate()
        .filter(|(i, m)| {
            !mounts[i + 1..].iter().any(|later| {
                m.mount_point.starts_with(&later.mount_point) && !is_ancestor(later.mount_id, m)
            })
        })
        .map(|(_, m)| m)
        .collect()
}

/// Validate a cgroup path: absolute with no `..` (a cgroup outside the reader's namespace shows
/// as `/../..`).
fn check_cgroup_path(path: &Path) -> Result<(), String> {
    if path
        .components()
        .any(|c| !matches!(c, Component::RootDir | Component::Normal(_)))
    {
        return Err(format!(
            "cgroup path {path:?} is outside this cgroup namespace"
        ));
    }
    Ok(())
}

/// The directory of cgroup `path` through mount `m`, when `m`'s root contains it.
fn through_mount(m: &MountLine, path: &Path) -> Option<PathBuf> {
    // The kernel writes both as absolute paths; anything else (an empty root would let the
    // cgroup path through whole, and join() with an absolute path drops the mount point) is no
    // mount to write through.
    if !m.root.has_root() || !m.mount_point.has_root() {
        return None;
    }
    let rel = path.strip_prefix(&m.root).ok()?;
    Some(if rel.as_os_str().is_empty() {
        m.mount_point.clone()
    } else {
        m.mount_point.join(rel)
    })
}

/// Decide the device cgroup from parsed `/proc/<pid>/cgroup` lines and the reader's mountinfo.
/// The file names are for the error message.
pub fn device_cgroup_from(
    cgroups: &[CgroupLine],
    mounts: &[MountLine],
    cgroup_file: &Path,
    mountinfo_file: &Path,
) -> Result<DeviceCgroup, FindError> {
    let not_found = |detail: String| FindError::NotFound {
        cgroup_file: cgroup_file.to_path_buf(),
        mountinfo_file: mountinfo_file.to_path_buf(),
        detail,
    };
    let visible = visible_mounts(mounts);
    let mut notes = Vec::new();

    if let Some(line) = cgroups
        .iter()
        .find(|l| l.hierarchy_id != 0 && l.controllers.iter().any(|c| c == "devices"))
    {
        check_cgroup_path(&line.path).map_err(not_found)?;
        let dir = visible
            .iter()
            .filter(|m| m.fs_type == "cgroup" && m.super_options.iter().any(|o| o == "devices"))
            .find_map(|m| through_mount(m, &line.path));
        match dir {
            Some(d) => return Ok(DeviceCgroup::V1(d)),
            None => notes.push(format!(
                "devices controller on v1 at {:?} but no visible v1 devices mount reaching it",
                line.path
            )),
        }
    }
    if let Some(line) = cgroups
        .iter()
        .find(|l| l.hierarchy_id == 0 && l.controllers.is_empty())
    {
        check_cgroup_path(&line.path).map_err(not_found)?;
        let dir = visible
            .iter()
            .filter(|m| m.fs_type == "cgroup2")
            .find_map(|m| through_mount(m, &line.path));
        match dir {
            Some(d) => return Ok(DeviceCgroup::V2(d)),
            None => notes.push(format!(
                "cgroup2 path {:?} but no visible cgroup2 mount reaching it",
                line.path
            )),
        }
    }
    if notes.is_empty() {
        notes.push("neither a devices controller line nor a 0:: line".into());
    }
    Err(not_found(notes.join("; ")))
}

/// Find the device cgroup of process `pid` from `<proc_root>/<pid>/cgroup` and
/// `<proc_root>/self/mountinfo` (the mounts as this process sees them, which is where it will
/// write).
pub fn find_device_cgroup(proc_root: &Path, pid: u32) -> Result<DeviceCgroup, FindError> {
    let cgroup_file = proc_root.join(pid.to_string()).join("cgroup");
    let mountinfo_file = proc_root.join("self/mountinfo");
    let read = |p: &Path| {
        crate::sys::read::read_text(p).map_err(|source| FindError::Read {
            path: p.to_path_buf(),
            source,
        })
    };
    let cgroups = parse_proc_cgroup(&read(&cgroup_file)?, &cgroup_file)?;
    let mounts = parse_mountinfo(&read(&mountinfo_file)?, &mountinfo_file)?;
    device_cgroup_from(&cgroups, &mounts, &cgroup_file, &mountinfo_file)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime shared:7 - cgroup cgroup rw,devices
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const HYBRID_CGROUP: &str = "\
9:name=systemd:/ctr1
5:devices:/ctr1
1:cpu:/ctr1
0::/ctr1
";

    fn decide(cg: &str, mi: &str) -> Result<DeviceCgroup, FindError> {
        let c = parse_proc_cgroup(cg, Path::new("/proc/7/cgroup"))?;
        let m = parse_mountinfo(mi, Path::new("/proc/self/mountinfo"))?;
        device_cgroup_from(
            &c,
            &m,
            Path::new("/proc/7/cgroup"),
            Path::new("/proc/self/mountinfo"),
        )
    }

    /// Found by the `cgroup_find` fuzz target: a mount whose root field is empty made the cgroup
    /// path itself (`/`) the directory, outside every mount point.
    #[test]
    fn a_mount_with_a_relative_root_or_mount_point_reaches_nothing() {
        for mi in [
            "40 31 0:38  /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n",
            "40 31 0:38 / sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n",
        ] {
            let e = decide("0::/\n", mi).unwrap_err().to_string();
            assert!(e.contains("no visible cgroup2 mount reaching it"), "{e}");
        }
    }

    #[test]
    fn hybrid_host_with_devices_on_v1_is_v1() {
        assert_eq!(
            decide(HYBRID_CGROUP, HYBRID_MOUNTINFO).unwrap(),
            DeviceCgroup::V1("/sys/fs/cgroup/devices/ctr1".into())
        );
    }

    #[test]
    fn pure_v2_host() {
        let mi = "27 1 254:0 / / rw - ext4 /dev/vda rw\n\
                  30 27 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            decide("0::/system.slice/docker-abc.scope\n", mi).unwrap(),
            DeviceCgroup::V2("/sys/fs/cgroup/system.slice/docker-abc.scope".into())
        );
    }

    #[test]
    fn cgroup2_over_the_hybrid_tmpfs_hides_the_v1_devices_mount() {
        // `unshare -m sh -c 'mount -t cgroup2 none /sys/fs/cgroup && runc run t2'`, as seen on
        // this project's hosts: the v1 hierarchy still exists (5:devices:/) but its mount is
        // hidden, and runc puts the container in /sys/fs/cgroup/t2 with an eBPF program.
        let mi = format!(
            "{HYBRID_MOUNTINFO}63 31 0:38 / /sys/fs/cgroup rw,relatime - cgroup2 none rw\n"
        );
        let cg = "9:name=systemd:/\n5:devices:/\n1:cpu:/\n0::/t2\n";
        assert_eq!(
            decide(cg, &mi).unwrap(),
            DeviceCgroup::V2("/sys/fs/cgroup/t2".into())
        );
    }

    #[test]
    fn a_mount_made_on_top_of_a_later_mount_is_not_hidden_by_it() {
        // 50 hides the tmpfs 31 and the devices mount 36 under it; 60 is mounted later on top
        // of 50, so 50 (its parent) does not hide it.
        let mi = "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
                  36 31 0:33 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices\n\
                  50 31 0:40 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
                  60 50 0:33 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices\n";
        let m = parse_mountinfo(mi, Path::new("mi")).unwrap();
        let ids: Vec<u32> = visible_mounts(&m).iter().map(|m| m.mount_id).collect();
        assert_eq!(ids, vec![50, 60]);
    }

    #[test]
    fn nested_container_mount_root_is_stripped() {
        // Inside a container whose cgroup mounts are rooted at its own cgroup.
        let mi = "100 90 0:33 /docker/abc /sys/fs/cgroup/devices ro - cgroup cgroup rw,devices\n\
                  101 90 0:38 /docker/abc /sys/fs/cgroup/unified ro - cgroup2 cgroup2 rw\n";
        assert_eq!(
            decide("5:devices:/docker/abc/inner\n0::/docker/abc\n", mi).unwrap(),
            DeviceCgroup::V1("/sys/fs/cgroup/devices/inner".into())
        );
        assert_eq!(
            decide("5:devices:/docker/abc\n", mi).unwrap(),
            DeviceCgroup::V1("/sys/fs/cgroup/devices".into())
        );
        // A path outside the mount's root cannot be reached through it.
        let e = decide("5:devices:/other\n", mi).unwrap_err().to_string();
        assert!(e.contains("/proc/7/cgroup") && e.contains("/other"), "{e}");
    }

    #[test]
    fn escaped_mount_points_are_decoded() {
        let mi = "36 31 0:33 / /mnt/my\\040cgroups/dev\\134ices rw - cgroup cgroup rw,devices\n";
        assert_eq!(
            decide("5:devices:/a b\n", mi).unwrap(),
            DeviceCgroup::V1("/mnt/my cgroups/dev\\ices/a b".into())
        );
        assert_eq!(
            unescape_mount_field("a\\011b\\012c"),
            PathBuf::from("a\tb\nc")
        );
        assert_eq!(
            unescape_mount_field("trailing\\04"),
            PathBuf::from("trailing\\04")
        );
        assert_eq!(unescape_mount_field("\\999"), PathBuf::from("\\999"));
    }

    #[test]
    fn devices_on_v1_without_a_v1_mount_falls_back_to_v2() {
        let mi = "30 27 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            decide("5:devices:/\n0::/c\n", mi).unwrap(),
            DeviceCgroup::V2("/sys/fs/cgroup/c".into())
        );
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let e = parse_proc_cgroup("5:devices:/a\nnonsense\n", Path::new("/proc/9/cgroup"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/proc/9/cgroup:2:"), "{e}");
        let e = parse_proc_cgroup("x:devices:/a\n", Path::new("/proc/9/cgroup"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/proc/9/cgroup:1:") && e.contains("hierarchy id"),
            "{e}"
        );
        let e = parse_mountinfo(
            "1 2 0:1 / /a rw - ext4 x rw\n3 4 0:1 / /b rw ext4\n",
            Path::new("/p/mi"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("/p/mi:2:"), "{e}");
        let e = parse_mountinfo("z 2 0:1 / /a rw - ext4 x rw\n", Path::new("/p/mi"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/p/mi:1:") && e.contains("mount id"), "{e}");
    }

    #[test]
    fn no_usable_line_is_an_error_naming_both_files() {
        let e = decide("1:cpu:/a\n", HYBRID_MOUNTINFO)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/proc/7/cgroup") && e.contains("/proc/self/mountinfo"),
            "{e}"
        );
        // A cgroup outside the reader's namespace.
        let e = decide("0::/../../x\n", HYBRID_MOUNTINFO)
            .unwrap_err()
            .to_string();
        assert!(e.contains("outside"), "{e}");
        // v2 line but no cgroup2 mount at all.
        let e = decide("0::/x\n", "27 1 254:0 / / rw - ext4 /dev/vda rw\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no visible cgroup2 mount"), "{e}");
    }

    #[test]
    fn reads_from_a_proc_root() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("42")).unwrap();
        std::fs::create_dir_all(d.path().join("self")).unwrap();
        std::fs::write(d.path().join("42/cgroup"), HYBRID_CGROUP).unwrap();
        std::fs::write(d.path().join("self/mountinfo"), HYBRID_MOUNTINFO).unwrap();
        assert_eq!(
            find_device_cgroup(d.path(), 42).unwrap(),
            DeviceCgroup::V1("/sys/fs/cgroup/devices/ctr1".into())
        );
        let e = find_device_cgroup(d.path(), 43).unwrap_err().to_string();
        assert!(e.contains("43/cgroup"), "{e}");
    }
}
