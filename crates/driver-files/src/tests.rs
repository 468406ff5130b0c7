//! Tests of the driver-file table.

use super::*;
use std::collections::BTreeSet;

#[test]
fn every_library_has_a_soname_and_a_versioned_name() {
    for f in driver_files("550.54.15") {
        match f.kind {
            FileKind::Library => {
                assert!(f.name.ends_with(".so.550.54.15"), "{}", f.name);
                let soname = f
                    .soname
                    .as_deref()
                    .unwrap_or_else(|| panic!("{} has no soname", f.name));
                let stem = f.name.split(".so.").next().unwrap();
                assert!(
                    soname.starts_with(&format!("{stem}.so.")),
                    "{soname} vs {}",
                    f.name
                );
            }
            _ => assert!(f.soname.is_none(), "{}", f.name),
        }
        assert!(!f.name.contains("{ver}"), "{}", f.name);
        assert!(!f.caps.is_empty(), "{} belongs to no capability", f.name);
    }
}

#[test]
fn names_are_unique() {
    let files = driver_files("550.54.15");
    let names: BTreeSet<String> = files.iter().map(|f| f.host_path()).collect();
    assert_eq!(names.len(), files.len());
}

#[test]
fn the_sonames_the_ecosystem_relies_on() {
    let files = driver_files("550.54.15");
    let soname = |name: &str| {
        files
            .iter()
            .find(|f| f.name == name)
            .and_then(|f| f.soname.clone())
            .unwrap_or_default()
    };
    assert_eq!(soname("libcuda.so.550.54.15"), "libcuda.so.1");
    assert_eq!(soname("libnvidia-ml.so.550.54.15"), "libnvidia-ml.so.1");
    assert_eq!(soname("libnvidia-nvvm.so.550.54.15"), "libnvidia-nvvm.so.4");
    assert_eq!(
        soname("libGLESv2_nvidia.so.550.54.15"),
        "libGLESv2_nvidia.so.2"
    );
    assert_eq!(
        soname("libnvidia-glcore.so.550.54.15"),
        "libnvidia-glcore.so.550.54.15"
    );
}

#[test]
fn capability_selection() {
    let utility = files_for("550.54.15", Caps::UTILITY);
    let names: Vec<&str> = utility.iter().map(|f| f.name.as_str()).collect();
    assert!(names.contains(&"libnvidia-ml.so.550.54.15"));
    assert!(names.contains(&"nvidia-smi"));
    assert!(names.contains(&"/run/nvidia-persistenced/socket"));
    assert!(!names.contains(&"libcuda.so.550.54.15"));
    assert!(!names.contains(&"/tmp/nvidia-mps"));
    // Firmware goes with every request.
    assert!(names.contains(&"/lib/firmware/nvidia/550.54.15/gsp_ga10x.bin"));
    let graphics = files_for("550.54.15", Caps::DISPLAY);
    assert!(graphics
        .iter()
        .any(|f| f.is_pattern() && f.examples == ["10_nvidia_wayland.json"]));
    assert!(graphics.iter().all(|f| f.kind != FileKind::Library));
}

#[test]
fn host_paths() {
    let files = driver_files("550.54.15");
    let path = |name: &str| files.iter().find(|f| f.name == name).unwrap().host_path();
    assert_eq!(
        path("libcuda.so.550.54.15"),
        "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15"
    );
    assert_eq!(
        path("libvdpau_nvidia.so.550.54.15"),
        "/usr/lib/x86_64-linux-gnu/vdpau/libvdpau_nvidia.so.550.54.15"
    );
    assert_eq!(path("nvidia-smi"), "/usr/bin/nvidia-smi");
}

#[test]
fn dev_links_and_search_dirs() {
    assert_eq!(dev_link_name("libcuda.so.1").as_deref(), Some("libcuda.so"));
    assert_eq!(
        dev_link_name("libnvidia-ml.so.1").as_deref(),
        Some("libnvidia-ml.so")
    );
    assert_eq!(dev_link_name("libnvidia-cfg.so.1"), None);
    assert_eq!(LIBRARY_DIRS[0], LIBRARY_DIR);
    assert_eq!(LIBRARY_DIRS_32[0], LIBRARY_DIR_32);
    assert_eq!(BINARY_DIRS[0], BINARY_DIR);
    for f in SIM_ONLY_FILES {
        assert!(f.host_path.starts_with('/'));
        assert!(!f.container_name.contains('/'));
        assert!(driver_files("1.2.3")
            .iter()
            .any(|d| d.soname.as_deref() == Some(f.beside)));
    }
}

#[test]
fn capability_names_round_trip() {
    for c in Capability::ALL {
        assert_eq!(Capability::from_name(c.name()), Some(c));
    }
    assert_eq!(Capability::from_name("all"), None);
    let set: Caps = [Capability::Video, Capability::Compute]
        .into_iter()
        .collect();
    assert_eq!(format!("{set:?}"), "Caps(compute,video)");
    assert_eq!(Caps::ANY.iter().count(), 7);
    let consts = [
        (Capability::Compute, Caps::COMPUTE),
        (Capability::Utility, Caps::UTILITY),
        (Capability::Video, Caps::VIDEO),
        (Capability::Graphics, Caps::GRAPHICS),
        (Capability::Display, Caps::DISPLAY),
        (Capability::Ngx, Caps::NGX),
        (Capability::Compat32, Caps::COMPAT32),
    ];
    for (c, set) in consts {
        assert_eq!([c].into_iter().collect::<Caps>(), set, "{c}");
    }
}
