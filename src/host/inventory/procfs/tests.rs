//! Tests of the procfs parsers on the driver's real formats and on malformed files.

use super::*;

fn p(name: &str) -> PathBuf {
    PathBuf::from(name)
}

/// The shape of a real host's /proc/devices with the NVIDIA drivers loaded.
const DEVICES: &str =
    "Character devices:\n  1 mem\n  4 /dev/vc/0\n  4 tty\n  5 /dev/tty\n 10 misc\n\
    195 nvidia-frontend\n226 drm\n234 nvidia-nvswitch\n235 nvidia-caps-imex-channels\n\
    236 nvidia-nvlink\n237 nvidia-caps\n238 nvidia-uvm\n\nBlock devices:\n  7 loop\n  8 sd\n\
    239 nvidia-caps\n259 blkext\n";

#[test]
fn devices_reads_the_character_section_only() {
    let m = parse_devices(DEVICES, &p("/proc/devices")).unwrap();
    assert_eq!(
        m,
        DeviceMajors {
            frontend: Some(195),
            uvm: Some(238),
            caps: Some(237)
        }
    );
}

#[test]
fn devices_older_driver_says_nvidia() {
    let text = "Character devices:\n195 nvidia\n243 nvidia-uvm\n\nBlock devices:\n  8 sd\n";
    let m = parse_devices(text, &p("/proc/devices")).unwrap();
    assert_eq!(
        m,
        DeviceMajors {
            frontend: Some(195),
            uvm: Some(243),
            caps: None
        }
    );
    // nvidia-frontend wins over a plain `nvidia` whatever the order.
    let text = "Character devices:\n195 nvidia-frontend\n200 nvidia\n";
    assert_eq!(parse_devices(text, &p("d")).unwrap().frontend, Some(195));
}

#[test]
fn devices_without_driver_has_no_majors() {
    let text = "Character devices:\n  1 mem\n\nBlock devices:\n195 nvidia-frontend\n";
    assert_eq!(
        parse_devices(text, &p("d")).unwrap(),
        DeviceMajors::default()
    );
}

#[test]
fn devices_malformed_line_names_file_and_line() {
    let text = "Character devices:\n  1 mem\n195nvidia-frontend\n";
    let e = parse_devices(text, &p("/proc/devices")).unwrap_err();
    assert_eq!(e.line, Some(3));
    let s = e.to_string();
    assert!(
        s.contains("/proc/devices") && s.contains("line 3") && s.contains("<major> <name>"),
        "{s}"
    );
    let e = parse_devices("Character devices:\nx nvidia-uvm\n", &p("d")).unwrap_err();
    assert_eq!(e.line, Some(2));
    let e = parse_devices("195 nvidia-frontend\n", &p("d")).unwrap_err();
    assert!(e.to_string().contains("Character devices:"), "{e}");
}

#[test]
fn version_proprietary_open_and_aarch64() {
    let f = p("/proc/driver/nvidia/version");
    let prop =
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\n\
                GCC version:  gcc version 12.3.0 (Ubuntu 12.3.0-1ubuntu1~22.04)\n";
    assert_eq!(parse_version(prop, &f).unwrap(), "550.54.15");
    let open = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  555.58.02  Release Build  \
                (dvs-builder@U16-I3-B03-4-3)  Tue Jun 25 01:26:03 UTC 2024\nGCC version:  gcc version 14.2.1\n";
    assert_eq!(parse_version(open, &f).unwrap(), "555.58.02");
    let arm = "NVRM version: NVIDIA UNIX aarch64 Kernel Module  535.104.05  Sat Aug 19 01:13:34 UTC 2023\n";
    assert_eq!(parse_version(arm, &f).unwrap(), "535.104.05");
    let arm_open =
        "NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  560.35  Release Build\n";
    assert_eq!(parse_version(arm_open, &f).unwrap(), "560.35");
}

#[test]
fn version_malformed() {
    let f = p("/proc/driver/nvidia/version");
    let e = parse_version(
        "GCC version: 12\nNVRM version: NVIDIA UNIX x86_64 Kernel Module  TempVersion\n",
        &f,
    )
    .unwrap_err();
    assert_eq!(e.line, Some(2));
    assert!(
        e.to_string().contains("/proc/driver/nvidia/version")
            && e.to_string().contains("550.54.15"),
        "{e}"
    );
    let e = parse_version("", &f).unwrap_err();
    assert_eq!(e.line, None);
    assert!(e.to_string().contains("NVRM version:"), "{e}");
}

/// As nv_procfs_read_gpu_info prints it (key, colon, tabs, value).
const INFORMATION: &str = "Model: \t\t NVIDIA A100-SXM4-40GB\nIRQ:   \t\t 158\n\
    GPU UUID: \t GPU-5d5a1ad8-7c4f-4b6e-a1a5-0b6c2e8f1a93\nVideo BIOS: \t 92.00.36.00.01\n\
    Bus Type: \t PCIe\nDMA Size: \t 47 bits\nDMA Mask: \t 0x7fffffffffff\n\
    Bus Location: \t 0000:07:00.0\nDevice Minor: \t 3\nGPU Firmware: \t 550.54.15\n\
    GPU Excluded:\t No\n";

#[test]
fn gpu_information_real_format() {
    let i = parse_gpu_information(INFORMATION, &p("info")).unwrap();
    assert_eq!(
        i,
        GpuInformation {
            model: "NVIDIA A100-SXM4-40GB".into(),
            uuid: Some("GPU-5d5a1ad8-7c4f-4b6e-a1a5-0b6c2e8f1a93".into()),
            bus_location: "0000:07:00.0".into(),
            minor: 3,
        }
    );
    // An uninitialized GPU on an older driver: the UUID is unknown, not an error.
    let text = INFORMATION.replace(
        "GPU-5d5a1ad8-7c4f-4b6e-a1a5-0b6c2e8f1a93",
        "GPU-????????-????-????-????-????????????",
    );
    assert_eq!(parse_gpu_information(&text, &p("info")).unwrap().uuid, None);
    // Upper-case hex in the bus id is normalized.
    let text = INFORMATION.replace("0000:07:00.0", "0000:B7:00.0");
    assert_eq!(
        parse_gpu_information(&text, &p("info"))
            .unwrap()
            .bus_location,
        "0000:b7:00.0"
    );
}

#[test]
fn gpu_information_malformed() {
    let f = p("/proc/driver/nvidia/gpus/0000:07:00.0/information");
    let e = parse_gpu_information(
        &INFORMATION.replace("Device Minor: \t 3", "Device Minor: \t three"),
        &f,
    )
    .unwrap_err();
    assert_eq!(e.line, Some(9));
    assert!(
        e.to_string().contains("0000:07:00.0/information")
            && e.to_string().contains("Device Minor"),
        "{e}"
    );
    let e = parse_gpu_information(
        &INFORMATION.replace("Bus Location: \t 0000:07:00.0", "Bus Location: \t 7"),
        &f,
    )
    .unwrap_err();
    assert_eq!(e.line, Some(8));
    let e = parse_gpu_information("Model: x\nno colon here\n", &f).unwrap_err();
    assert_eq!(e.line, Some(2));
    let e = parse_gpu_information("Model: x\nBus Location: 0000:07:00.0\n", &f).unwrap_err();
    assert_eq!(e.line, None);
    assert!(e.to_string().contains("Device Minor"), "{e}");
    let e = parse_gpu_information(&INFORMATION.replace("GPU-5d5a", "5d5a"), &f).unwrap_err();
    assert_eq!(e.line, Some(3));
}

#[test]
fn mig_minors_real_file() {
    let text = migcage_topology::mig_minors_file();
    let m = parse_mig_minors(&text, &p("mig-minors")).unwrap();
    assert_eq!(m.config, Some(1));
    assert_eq!(m.monitor, Some(2));
    assert_eq!(m.gi(0, 1), Some(12));
    assert_eq!(m.ci(0, 1, 0), Some(13));
    assert_eq!(m.gi_access.len(), 32 * 15);
    assert_eq!(m.ci_access.len(), 32 * 15 * 8);
    for (gpu, gi, ci) in [(0, 0, 0), (3, 7, 0), (7, 13, 7), (31, 14, 7)] {
        assert_eq!(
            m.gi(gpu, gi),
            Some(migcage_topology::gi_access_minor(gpu, gi))
        );
        assert_eq!(
            m.ci(gpu, gi, ci),
            Some(migcage_topology::ci_access_minor(gpu, gi, ci))
        );
    }
    assert_eq!(m.gi(32, 0), None);
    assert!(m.other.is_empty());
}

#[test]
fn mig_minors_keeps_unknown_names() {
    let m = parse_mig_minors(
        "config 1\nmonitor 2\nfabric-imex 9\ngpu0/gi1/access 12\n",
        &p("m"),
    )
    .unwrap();
    assert_eq!(m.other.get("fabric-imex"), Some(&9));
    assert_eq!(gi_access_name(0, 1), "gpu0/gi1/access");
    assert_eq!(ci_access_name(2, 3, 4), "gpu2/gi3/ci4/access");
}

#[test]
fn mig_minors_malformed_lines() {
    let f = p("/proc/driver/nvidia-caps/mig-minors");
    for (text, line) in [
        ("config 1\nmonitor two\n", 2),
        ("config 1\nmonitor\n", 2),
        ("config 1\nmonitor 2\ngpu0/gi1/access 12 13\n", 3),
        ("gpu0/gi/access 3\n", 1),
        ("gpu0/gi1/ci0/acces 4\n", 1),
        ("gpuX/gi1/access 4\n", 1),
        ("config 1\nconfig 1\n", 2),
        ("gpu0/gi1/access 12\ngpu0/gi1/access 13\n", 2),
        ("gpu0/gi1/access -1\n", 1),
    ] {
        let e = parse_mig_minors(text, &f).unwrap_err();
        assert_eq!(e.line, Some(line), "{text:?}: {e}");
        let s = e.to_string();
        assert!(
            s.contains("/proc/driver/nvidia-caps/mig-minors")
                && s.contains(&format!("line {line}")),
            "{s}"
        );
    }
}

#[test]
fn cap_access_real_format() {
    let text = "DeviceFileMinor: 66\nDeviceFileMode: 292\nDeviceFileModify: 1\n";
    let c = parse_cap_access(text, &p("access")).unwrap();
    assert_eq!(
        c,
        CapAccess {
            minor: 66,
            mode: 0o444,
            modify: true
        }
    );
    let c = parse_cap_access(
        "DeviceFileMinor: 1\nDeviceFileMode: 256\nDeviceFileModify: 0\n",
        &p("a"),
    )
    .unwrap();
    assert_eq!(
        c,
        CapAccess {
            minor: 1,
            mode: 0o400,
            modify: false
        }
    );
}

#[test]
fn cap_access_malformed() {
    let f = p("/proc/driver/nvidia/capabilities/gpu0/mig/gi7/access");
    let e = parse_cap_access(
        "DeviceFileMinor: x\nDeviceFileMode: 292\nDeviceFileModify: 1\n",
        &f,
    )
    .unwrap_err();
    assert_eq!(e.line, Some(1));
    assert!(
        e.to_string().contains("gi7/access") && e.to_string().contains("DeviceFileMinor"),
        "{e}"
    );
    let e = parse_cap_access(
        "DeviceFileMinor: 3\nDeviceFileMode: 292\nDeviceFileModify: 2\n",
        &f,
    )
    .unwrap_err();
    assert_eq!(e.line, Some(3));
    let e = parse_cap_access(
        "DeviceFileMinor: 3\nDeviceFileMode: 99999\nDeviceFileModify: 1\n",
        &f,
    )
    .unwrap_err();
    assert_eq!(e.line, Some(2));
    let e = parse_cap_access("DeviceFileMinor 3\n", &f).unwrap_err();
    assert_eq!(e.line, Some(1));
    let e = parse_cap_access("DeviceFileMode: 292\nDeviceFileModify: 1\n", &f).unwrap_err();
    assert_eq!(e.line, None);
    assert!(e.to_string().contains("DeviceFileMinor"), "{e}");
}

#[test]
fn bus_id_shape() {
    assert!(is_proc_bus_id("0000:07:00.0"));
    assert!(is_proc_bus_id("0001:b7:1f.7"));
    assert!(!is_proc_bus_id("00000000:07:00.0"));
    assert!(!is_proc_bus_id("0000:07:00"));
    assert!(!is_proc_bus_id("0000:0g:00.0"));
}
