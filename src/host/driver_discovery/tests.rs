//! Tests of driver discovery, over hand-made driver roots.

use super::*;
use crate::core::ldcache::Entry;
use migcage_simulate::elf::tiny_shared_object;
use std::os::unix::fs::symlink;

const VER: &str = "550.54.15";

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn config(root: &Path) -> Config {
    Config {
        driver_root: root.to_path_buf(),
        ..Config::default()
    }
}

fn find<'a>(d: &'a DriverFiles, path: &str) -> Option<&'a HostFile> {
    d.files.iter().find(|f| f.path == path)
}

#[test]
fn globs() {
    assert!(glob_match("*nvidia*.json", "10_nvidia_wayland.json"));
    assert!(glob_match("*nvidia*.json", "nvidia.json"));
    assert!(!glob_match("*nvidia*.json", "10_mesa.json"));
    assert!(!glob_match("*nvidia*.json", "nvidia.json.bak"));
    assert!(glob_match("gsp*.bin", "gsp_ga10x.bin"));
    assert!(glob_match("exact", "exact"));
    assert!(!glob_match("a*a", "a"));
}

/// Lay out the host of the test below: libcuda where only the ld cache says, a stale
/// libnvidia-ml where the cache points and the current one elsewhere, an old libnvidia-opencl
/// only, a libnvidia-cfg that is not ELF, a binary, firmware and a config glob.
fn stale_and_current_host(root: &Path) {
    let elf = |soname: &str| tiny_shared_object(soname, &[]);
    write(
        &root.join(format!("opt/nv/lib/libcuda.so.{VER}")),
        &elf("libcuda.so.1"),
    );
    symlink(
        format!("libcuda.so.{VER}"),
        root.join("opt/nv/lib/libcuda.so.1"),
    )
    .unwrap();
    // libnvidia-ml: the cache points at an old version; the right one is in /usr/lib64.
    write(
        &root.join("usr/lib/x86_64-linux-gnu/libnvidia-ml.so.535.104.05"),
        &elf("libnvidia-ml.so.1"),
    );
    symlink(
        "libnvidia-ml.so.535.104.05",
        root.join("usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"),
    )
    .unwrap();
    write(
        &root.join(format!("usr/lib64/libnvidia-ml.so.{VER}")),
        &elf("libnvidia-ml.so.1"),
    );
    // libnvidia-opencl: only an old version.
    write(
        &root.join("usr/lib/x86_64-linux-gnu/libnvidia-opencl.so.535.104.05"),
        &elf("libnvidia-opencl.so.1"),
    );
    symlink(
        "libnvidia-opencl.so.535.104.05",
        root.join("usr/lib/x86_64-linux-gnu/libnvidia-opencl.so.1"),
    )
    .unwrap();
    // libnvidia-cfg: right name, but not an ELF object.
    write(
        &root.join(format!("usr/lib/x86_64-linux-gnu/libnvidia-cfg.so.{VER}")),
        b"not elf",
    );
    // A binary and a socket-less run dir, firmware, a config glob.
    write(&root.join("usr/sbin/nvidia-persistenced"), b"#!/bin/sh\n");
    write(
        &root.join(format!("lib/firmware/nvidia/{VER}/gsp_ga10x.bin")),
        b"fw",
    );
    write(
        &root.join("usr/share/egl/egl_external_platform.d/15_nvidia_gbm.json"),
        b"{}",
    );
    write(
        &root.join("usr/share/egl/egl_external_platform.d/50_mesa.json"),
        b"{}",
    );
    write(
        &root.join("etc/ld.so.cache"),
        &crate::core::ldcache::tests::old_format(&[
            ("libcuda.so.1", "/opt/nv/lib/libcuda.so.1", FLAGS_X86_64),
            (
                "libnvidia-ml.so.1",
                "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
                FLAGS_X86_64,
            ),
            (
                "libnvidia-opencl.so.1",
                "/usr/lib/x86_64-linux-gnu/libnvidia-opencl.so.1",
                FLAGS_X86_64,
            ),
        ]),
    );
}

/// A host whose ld cache (in the old format, by hand) names libcuda in a non-default
/// directory, with a stale libnvidia-ml of another version in the default one.
#[test]
fn cache_first_then_directories_and_only_this_version() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    stale_and_current_host(root);
    let found = discover(&config(root), VER).unwrap();
    let cuda = find(&found, &format!("/opt/nv/lib/libcuda.so.{VER}")).expect("libcuda");
    assert_eq!(
        cuda.library,
        Some(Library {
            soname: "libcuda.so.1".into(),
            arch: LibArch::X86_64,
            dev_link: Some("libcuda.so".into()),
            in_ld_cache: true,
        })
    );
    assert_eq!(cuda.caps, crate::core::driver_files::Caps::COMPUTE);
    assert!(cuda
        .host_path
        .starts_with(std::fs::canonicalize(root).unwrap()));
    assert!(find(&found, &format!("/usr/lib64/libnvidia-ml.so.{VER}")).is_some());
    assert!(
        !found.files.iter().any(|f| f.path.contains("535")),
        "the stale library is never taken"
    );
    assert!(!found.files.iter().any(|f| f.path.contains("libnvidia-cfg")));
    assert!(find(&found, "/usr/sbin/nvidia-persistenced").is_some());
    assert!(find(&found, &format!("/lib/firmware/nvidia/{VER}/gsp_ga10x.bin")).is_some());
    assert!(find(
        &found,
        "/usr/share/egl/egl_external_platform.d/15_nvidia_gbm.json"
    )
    .is_some());
    assert!(!found.files.iter().any(|f| f.path.contains("mesa")));
    let missing = found.missing.join("\n");
    assert!(
        missing.contains(&format!("libnvidia-opencl.so.{VER} (x86-64): /usr/lib/x86_64-linux-gnu/libnvidia-opencl.so.1 is libnvidia-opencl.so.535.104.05, not the running driver's {VER}")),
        "{missing}"
    );
    assert!(
        missing.contains(&format!("libnvidia-cfg.so.{VER} (x86-64): /usr/lib/x86_64-linux-gnu/libnvidia-cfg.so.{VER} is not an x86-64 ELF object")),
        "{missing}"
    );
    assert!(!missing.contains("libnvidia-ml"), "{missing}");
    assert!(missing.contains("nvidia-smi: not found"), "{missing}");
    // No sim-only file with the default configuration.
    assert!(!found.files.iter().any(|f| f.sim_only));
}

/// A container start looks only for the files its capabilities get, and gets exactly the edits
/// a search for every file would have given it, for every capability on its own, with
/// compat32, and together.
#[test]
fn looking_only_for_the_wanted_files_gives_the_same_edits() {
    use crate::core::driver_files::{Capability, Caps};
    use crate::core::plan::driver::driver_edits;
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    stale_and_current_host(root);
    let all = discover(&config(root), VER).unwrap();
    let mut cases: Vec<Caps> = Capability::ALL
        .iter()
        .map(|c| std::iter::once(*c).collect())
        .collect();
    cases.push(Caps::COMPUTE.or(Caps::COMPAT32));
    cases.push(Caps::UTILITY.or(Caps::COMPUTE));
    cases.push(Caps::ANY);
    for wanted in cases {
        let some = discover_for(&config(root), VER, wanted).unwrap();
        assert_eq!(
            driver_edits(wanted, &some),
            driver_edits(wanted, &all),
            "{wanted:?}"
        );
        assert!(some.files.len() <= all.files.len());
    }
    let utility = discover_for(&config(root), VER, Caps::UTILITY).unwrap();
    assert!(
        utility.files.len() < all.files.len(),
        "utility alone skips compute's libcuda"
    );
    assert!(!utility.files.iter().any(|f| f.path.contains("libcuda")));
    // Nothing wanted: nothing looked for, not even a driver root that is not there.
    let nothing = discover_for(&config(&root.join("absent")), VER, Caps::NONE).unwrap();
    assert!(nothing.files.is_empty() && nothing.missing.is_empty());
}

/// The simulator's files come only with `simulated_driver = true`, whatever the tree holds
/// (a marker file of the simulator included), and only next to the library they go with.
#[test]
fn sim_only_files_follow_the_config_not_the_tree() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    write(
        &root.join(format!("usr/lib/x86_64-linux-gnu/libnvidia-ml.so.{VER}")),
        &tiny_shared_object("libnvidia-ml.so.1", &[]),
    );
    let sim = SIM_ONLY_FILES[0];
    write(
        &root.join(sim.host_path.trim_start_matches('/')),
        b"# topology\n",
    );
    write(
        &root.join(migcage_simulate::MARKER),
        b"made by migcage simulate\n",
    );
    let found = discover(&config(root), VER).unwrap();
    assert!(!found.files.iter().any(|f| f.sim_only));
    let simulated = Config {
        simulated_driver: true,
        ..config(root)
    };
    let found = discover(&simulated, VER).unwrap();
    let s: Vec<&HostFile> = found.files.iter().filter(|f| f.sim_only).collect();
    assert_eq!(s.len(), 1, "{:?}", found.files);
    assert_eq!(
        s[0].path,
        format!("/usr/lib/x86_64-linux-gnu/{}", sim.container_name)
    );
    assert_eq!(s[0].caps, sim.caps);
    assert_eq!(s[0].kind, FileKind::ConfigFile);
}

#[test]
fn a_symlink_out_of_the_driver_root_is_not_taken() {
    let d = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    write(
        &outside.path().join(format!("libcuda.so.{VER}")),
        &tiny_shared_object("libcuda.so.1", &[]),
    );
    std::fs::create_dir_all(d.path().join("usr/lib/x86_64-linux-gnu")).unwrap();
    symlink(
        outside.path().join(format!("libcuda.so.{VER}")),
        d.path()
            .join(format!("usr/lib/x86_64-linux-gnu/libcuda.so.{VER}")),
    )
    .unwrap();
    let found = discover(&config(d.path()), VER).unwrap();
    assert!(!found.files.iter().any(|f| f.path.contains("libcuda")));
}

#[test]
fn no_cache_and_a_broken_cache_fall_back_to_directories() {
    let d = tempfile::tempdir().unwrap();
    write(
        &d.path()
            .join(format!("usr/lib/x86_64-linux-gnu/libcuda.so.{VER}")),
        &tiny_shared_object("libcuda.so.1", &[]),
    );
    let found = discover(&config(d.path()), VER).unwrap();
    assert!(find(
        &found,
        &format!("/usr/lib/x86_64-linux-gnu/libcuda.so.{VER}")
    )
    .is_some());
    write(&d.path().join("etc/ld.so.cache"), b"garbage");
    let found = discover(&config(d.path()), VER).unwrap();
    assert!(find(
        &found,
        &format!("/usr/lib/x86_64-linux-gnu/libcuda.so.{VER}")
    )
    .is_some());
    assert!(
        found.missing[0].contains("not an ld.so cache"),
        "{:?}",
        found.missing
    );
    // A new-format cache written by us works the same.
    let mut c = LdCache::default();
    c.entries.push(Entry::new(
        "libcuda.so.1",
        "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
        FLAGS_X86_64,
    ));
    write(&d.path().join("etc/ld.so.cache"), &c.to_bytes("t"));
    let found = discover(&config(d.path()), VER).unwrap();
    assert!(found.missing.iter().all(|m| !m.contains("ld.so.cache")));
}

#[test]
fn a_missing_root_is_one_clear_line() {
    let e = discover(&config(Path::new("/nonexistent/driver")), VER).unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("/nonexistent/driver") && s.contains("driver_root"),
        "{s}"
    );
    assert!(!s.contains('\n'));
}

/// What resolution by directory (one canonicalize per directory, links in the same directory
/// followed by lstat) must give as canonicalize did: a library directory reached through a
/// symlinked directory (`/lib` to `usr/lib`, usrmerge) resolves to the real one, a chain of
/// soname links is followed to the versioned file, and a link into another directory of the
/// root resolves there.
#[test]
fn links_resolve_to_the_real_file_inside_the_root() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let real = root.join("usr/lib/x86_64-linux-gnu");
    write(
        &real.join(format!("libcuda.so.{VER}")),
        &tiny_shared_object("libcuda.so.1", &[]),
    );
    // A chain in one directory: libcuda.so.1 -> libcuda.so.1.1 -> libcuda.so.VER.
    symlink("libcuda.so.1.1", real.join("libcuda.so.1")).unwrap();
    symlink(format!("libcuda.so.{VER}"), real.join("libcuda.so.1.1")).unwrap();
    // A link into another directory of the root.
    write(
        &root.join(format!("opt/nvidia/libnvidia-ml.so.{VER}")),
        &tiny_shared_object("libnvidia-ml.so.1", &[]),
    );
    symlink(
        format!("../../../opt/nvidia/libnvidia-ml.so.{VER}"),
        real.join(format!("libnvidia-ml.so.{VER}")),
    )
    .unwrap();
    // usrmerge: /lib is a link to usr/lib.
    symlink("usr/lib", root.join("lib")).unwrap();
    let found = discover(&config(root), VER).unwrap();
    let canon = std::fs::canonicalize(root).unwrap();
    let cuda = found
        .files
        .iter()
        .find(|f| {
            f.library
                .as_ref()
                .is_some_and(|l| l.soname == "libcuda.so.1")
        })
        .expect("libcuda found");
    assert_eq!(
        cuda.host_path,
        canon.join(format!("usr/lib/x86_64-linux-gnu/libcuda.so.{VER}"))
    );
    assert_eq!(
        cuda.path,
        format!("/usr/lib/x86_64-linux-gnu/libcuda.so.{VER}")
    );
    let ml = found
        .files
        .iter()
        .find(|f| {
            f.library
                .as_ref()
                .is_some_and(|l| l.soname == "libnvidia-ml.so.1")
        })
        .expect("libnvidia-ml found");
    assert_eq!(
        ml.host_path,
        canon.join(format!("opt/nvidia/libnvidia-ml.so.{VER}"))
    );
}
