//! The driver's procfs files, in the driver's own formats.
//!
//! Formats follow the kernel module sources (`kernel-open/nvidia/nv-procfs.c` for `version`,
//! `params`, `registry` and `gpus/<bus>/information`; `nv-caps.c` for the capability files; the
//! `nv_parms[]` table of `nv-reg.h` for the order of the `params` keys) and dumps of real hosts.
//! Every function here is pure: it returns the text, and [`files`] lists every file of a topology
//! with its relative path.

use migcage_topology::{
    Gpu, Majors, Topology, FRONTEND_MAJOR, MIG_CONFIG_MINOR, MIG_MONITOR_MINOR,
};

/// `DeviceFileMode` of `capabilities/mig/config` (0400, decimal as the driver prints it).
pub const MIG_CONFIG_MODE: u32 = 0o400;
/// `DeviceFileMode` of `mig/monitor` and of every GPU/compute instance access file (0444).
pub use migcage_topology::CAP_READ_MODE;

/// Character majors of a typical x86-64 server, which `/proc/devices` lists around NVIDIA's.
const HOST_CHAR_DEVICES: &[(u32, &str)] = &[
    (1, "mem"),
    (4, "/dev/vc/0"),
    (4, "tty"),
    (4, "ttyS"),
    (5, "/dev/tty"),
    (5, "/dev/console"),
    (5, "/dev/ptmx"),
    (7, "vcs"),
    (10, "misc"),
    (13, "input"),
    (21, "sg"),
    (29, "fb"),
    (89, "i2c"),
    (128, "ptm"),
    (136, "pts"),
    (180, "usb"),
    (189, "usb_device"),
    (202, "cpu/msr"),
    (203, "cpu/cpuid"),
    (226, "drm"),
    (238, "ipmidev"),
    (239, "aux"),
    (240, "cec"),
    (241, "hidraw"),
    (242, "ttyDBC"),
    (243, "bsg"),
    (244, "watchdog"),
    (245, "ptp"),
    (246, "pps"),
    (247, "rtc"),
    (248, "dax"),
    (249, "dimmctl"),
    (250, "ndctl"),
    (251, "tpm"),
    (252, "gpiochip"),
    (253, "infiniband_verbs"),
    (254, "infiniband_mad"),
];

const HOST_BLOCK_DEVICES: &[(u32, &str)] = &[
    (7, "loop"),
    (8, "sd"),
    (9, "md"),
    (11, "sr"),
    (65, "sd"),
    (66, "sd"),
    (67, "sd"),
    (68, "sd"),
    (69, "sd"),
    (70, "sd"),
    (71, "sd"),
    (128, "sd"),
    (129, "sd"),
    (130, "sd"),
    (131, "sd"),
    (132, "sd"),
    (133, "sd"),
    (134, "sd"),
    (135, "sd"),
    (253, "device-mapper"),
    (254, "mdp"),
    (259, "blkext"),
];

/// `/proc/devices`: the host's character devices with NVIDIA's three drivers among them (in major
/// order, as the kernel prints them), then the block devices.
pub fn devices(majors: &Majors) -> String {
    let mut chars: Vec<(u32, &str)> = HOST_CHAR_DEVICES
        .iter()
        .copied()
        .filter(|(m, _)| *m != majors.uvm && *m != majors.caps && *m != FRONTEND_MAJOR)
        .collect();
    chars.push((FRONTEND_MAJOR, "nvidia-frontend"));
    chars.push((majors.uvm, "nvidia-uvm"));
    chars.push((majors.caps, "nvidia-caps"));
    chars.sort_by_key(|(m, _)| *m);
    let mut s = String::from("Character devices:\n");
    for (m, name) in chars {
        s.push_str(&format!("{m:>3} {name}\n"));
    }
    s.push_str("\nBlock devices:\n");
    for (m, name) in HOST_BLOCK_DEVICES {
        s.push_str(&format!("{m:>3} {name}\n"));
    }
    s
}

/// The build date the driver release carries in its version banner, where known.
fn build_date(driver_version: &str) -> &'static str {
    match driver_version {
        "550.54.15" => "Tue Mar  5 22:23:56 UTC 2024",
        _ => "Thu Jan  1 00:00:00 UTC 2025",
    }
}

/// `/proc/driver/nvidia/version` of the proprietary kernel module built with Debian 12's GCC
/// (the compiler line keeps the trailing space real hosts show).
pub fn version(driver_version: &str) -> String {
    format!(
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  {driver_version}  {}\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14) \n",
        build_date(driver_version)
    )
}

/// `/proc/driver/nvidia/params` with the driver's defaults: the numeric keys of `nv_parms[]` in
/// table order, then the string parameters.
pub fn params() -> String {
    const NUMERIC: &[(&str, u32)] = &[
        ("ResmanDebugLevel", u32::MAX),
        ("RmLogonRC", 1),
        ("ModifyDeviceFiles", 1),
        ("DeviceFileUID", 0),
        ("DeviceFileGID", 0),
        ("DeviceFileMode", 0o666),
        ("InitializeSystemMemoryAllocations", 1),
        ("UsePageAttributeTable", u32::MAX),
        ("EnableMSI", 1),
        ("EnablePCIeGen3", 0),
        ("MemoryPoolSize", 0),
        ("KMallocHeapMaxSize", 0),
        ("VMallocHeapMaxSize", 0),
        ("IgnoreMMIOCheck", 0),
        ("EnableStreamMemOPs", 0),
        ("EnableUserNUMAManagement", 1),
        ("NvLinkDisable", 0),
        ("RmProfilingAdminOnly", 1),
        ("PreserveVideoMemoryAllocations", 0),
        ("EnableS0ixPowerManagement", 0),
        ("S0ixPowerManagementVideoMemoryThreshold", 256),
        ("DynamicPowerManagement", 3),
        ("DynamicPowerManagementVideoMemoryThreshold", 200),
        ("RegisterPCIDriver", 1),
        ("EnablePCIERelaxedOrderingMode", 0),
        ("EnableResizableBar", 0),
        ("EnableGpuFirmware", 18),
        ("EnableGpuFirmwareLogs", 2),
        ("RmNvlinkBandwidthLinkCount", 0),
        ("EnableDbgBreakpoint", 0),
        ("OpenRmEnableUnsupportedGpus", 0),
        ("DmaRemapPeerMmio", 1),
        ("ImexChannelCount", 2048),
        ("CreateImexChannel0", 0),
        ("GrdmaPciTopoCheckOverride", 0),
    ];
    const STRINGS: &[&str] = &[
        "RegistryDwords",
        "RegistryDwordsPerDevice",
        "RmMsg",
        "GpuBlacklist",
        "TemporaryFilePath",
        "ExcludedGpus",
    ];
    let mut s = String::new();
    for (key, value) in NUMERIC {
        s.push_str(&format!("{key}: {value}\n"));
    }
    for key in STRINGS {
        s.push_str(&format!("{key}: \"\"\n"));
    }
    s
}

/// `/proc/driver/nvidia/registry` (and each GPU's `registry`) when no key was written.
pub fn registry() -> String {
    "Binary: \"\"\n".to_string()
}

/// The Video BIOS version the simulator gives a model.
pub fn vbios_version(gpu: &Gpu) -> &'static str {
    match gpu.model.key {
        "a100-sxm4-40gb" => "92.00.25.00.08",
        "a100-sxm4-80gb" => "92.00.36.00.02",
        "h100-sxm5-80gb" => "96.00.74.00.01",
        _ => "00.00.00.00.00",
    }
}

/// Bits of DMA address the GPU supports (47 on Ampere, 52 from Hopper on).
fn dma_bits(gpu: &Gpu) -> u32 {
    if gpu.model.architecture >= 9 {
        52
    } else {
        47
    }
}

/// `/proc/driver/nvidia/gpus/<bus>/information`. The `GPU Firmware` line appears when the GPU runs
/// GSP firmware, which Hopper always does.
pub fn gpu_information(gpu: &Gpu, driver_version: &str) -> String {
    let bits = dma_bits(gpu);
    let mut s = String::new();
    s.push_str(&format!("Model: \t\t {}\n", gpu.model.name));
    s.push_str(&format!("IRQ:   \t\t {}\n", 128 + gpu.index * 8));
    s.push_str(&format!("GPU UUID: \t {}\n", gpu.uuid));
    s.push_str(&format!("Video BIOS: \t {}\n", vbios_version(gpu)));
    s.push_str("Bus Type: \t PCIe\n");
    s.push_str(&format!("DMA Size: \t {bits} bits\n"));
    s.push_str(&format!("DMA Mask: \t 0x{:x}\n", (1u64 << bits) - 1));
    s.push_str(&format!("Bus Location: \t {}\n", gpu.proc_bus_id()));
    s.push_str(&format!("Device Minor: \t {}\n", gpu.minor));
    if gpu.model.architecture >= 9 {
        s.push_str(&format!("GPU Firmware: \t {driver_version}\n"));
    }
    s.push_str("GPU Excluded:\t No\n");
    s
}

/// A capability file of `/proc/driver/nvidia/capabilities` (`DeviceFileModify` is 1: the driver
/// manages the node).
pub fn capability(minor: u32, mode: u32) -> String {
    migcage_topology::capability_file(minor, mode)
}

/// A file of the simulated procfs: a path relative to the proc root, and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcFile {
    pub path: String,
    pub text: String,
}

/// Every procfs file of a topology, relative to the proc root.
pub fn files(t: &Topology) -> Vec<ProcFile> {
    let mut out = Vec::new();
    let mut add = |path: String, text: String| out.push(ProcFile { path, text });
    add("devices".into(), devices(&t.majors));
    add("driver/nvidia/version".into(), version(&t.driver_version));
    add("driver/nvidia/params".into(), params());
    add("driver/nvidia/registry".into(), registry());
    for gpu in &t.gpus {
        let dir = format!("driver/nvidia/gpus/{}", gpu.proc_bus_id());
        add(
            format!("{dir}/information"),
            gpu_information(gpu, &t.driver_version),
        );
        add(format!("{dir}/registry"), registry());
    }
    let caps = "driver/nvidia/capabilities";
    add(
        format!("{caps}/mig/config"),
        capability(MIG_CONFIG_MINOR, MIG_CONFIG_MODE),
    );
    add(
        format!("{caps}/mig/monitor"),
        capability(MIG_MONITOR_MINOR, CAP_READ_MODE),
    );
    for gpu in t.gpus.iter().filter(|g| g.mig) {
        for gi in &gpu.gpu_instances {
            let gi_dir = format!("{caps}/gpu{}/mig/gi{}", gpu.minor, gi.id);
            let minor = migcage_topology::gi_access_minor(gpu.minor, gi.id);
            add(format!("{gi_dir}/access"), capability(minor, CAP_READ_MODE));
            for ci in &gi.compute_instances {
                let minor = migcage_topology::ci_access_minor(gpu.minor, gi.id, ci.id);
                add(
                    format!("{gi_dir}/ci{}/access", ci.id),
                    capability(minor, CAP_READ_MODE),
                );
            }
        }
    }
    add(
        "driver/nvidia-caps/mig-minors".into(),
        migcage_topology::mig_minors_file(),
    );
    out
}

/// Directories of the simulated procfs that exist even when empty: each GPU's capability
/// directory (`capabilities/gpu<minor>/mig`), which the driver creates for every MIG-capable GPU.
pub fn empty_dirs(t: &Topology) -> Vec<String> {
    t.gpus
        .iter()
        .map(|g| format!("driver/nvidia/capabilities/gpu{}/mig", g.minor))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a100() -> Topology {
        Topology::load("a100-7x1g").unwrap()
    }

    #[test]
    fn information_of_a_known_gpu() {
        let t = a100();
        let text = gpu_information(&t.gpus[0], &t.driver_version);
        let expected = format!(
            "Model: \t\t NVIDIA A100-SXM4-40GB\n\
             IRQ:   \t\t 128\n\
             GPU UUID: \t {}\n\
             Video BIOS: \t 92.00.25.00.08\n\
             Bus Type: \t PCIe\n\
             DMA Size: \t 47 bits\n\
             DMA Mask: \t 0x7fffffffffff\n\
             Bus Location: \t 0000:07:00.0\n\
             Device Minor: \t 0\n\
             GPU Excluded:\t No\n",
            t.gpus[0].uuid
        );
        assert_eq!(text, expected);
        let h100 = Topology::load("h100-mixed").unwrap();
        let text = gpu_information(&h100.gpus[0], "550.54.15");
        assert!(
            text.contains("DMA Size: \t 52 bits\nDMA Mask: \t 0xfffffffffffff\n"),
            "{text}"
        );
        assert!(
            text.contains("GPU Firmware: \t 550.54.15\nGPU Excluded:\t No\n"),
            "{text}"
        );
    }

    #[test]
    fn version_banner() {
        assert_eq!(
            version("550.54.15"),
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\n\
             GCC version:  gcc version 12.2.0 (Debian 12.2.0-14) \n"
        );
        // A parser that takes the first dotted-number field finds the version.
        let field = version("535.161.08")
            .split_whitespace()
            .find(|w| w.contains('.'))
            .map(str::to_string);
        assert_eq!(field.as_deref(), Some("535.161.08"));
    }

    #[test]
    fn params_holds_the_device_file_keys_in_driver_order() {
        let p = params();
        assert!(p.starts_with(
            "ResmanDebugLevel: 4294967295\nRmLogonRC: 1\nModifyDeviceFiles: 1\nDeviceFileUID: 0\nDeviceFileGID: 0\nDeviceFileMode: 438\n"
        ));
        assert!(p.ends_with("TemporaryFilePath: \"\"\nExcludedGpus: \"\"\n"));
        assert!(p.lines().all(|l| l.split_once(": ").is_some()), "{p}");
    }

    #[test]
    fn devices_lists_nvidia_majors_in_order() {
        let d = devices(&Majors {
            uvm: 510,
            caps: 509,
        });
        assert!(d.starts_with("Character devices:\n  1 mem\n"));
        assert!(
            d.contains("\n189 usb_device\n195 nvidia-frontend\n202 cpu/msr\n"),
            "{d}"
        );
        assert!(d.contains("\n254 infiniband_mad\n509 nvidia-caps\n510 nvidia-uvm\n\nBlock devices:\n  7 loop\n"), "{d}");
        // A topology may choose a major a host driver uses: NVIDIA's wins, no duplicates.
        let d = devices(&Majors {
            uvm: 244,
            caps: 245,
        });
        assert!(
            d.contains("\n243 bsg\n244 nvidia-uvm\n245 nvidia-caps\n246 pps\n"),
            "{d}"
        );
        assert_eq!(d.matches("watchdog").count(), 0);
    }

    #[test]
    fn capability_files() {
        assert_eq!(
            capability(1, MIG_CONFIG_MODE),
            "DeviceFileMinor: 1\nDeviceFileMode: 256\nDeviceFileModify: 1\n"
        );
        assert_eq!(
            capability(2, CAP_READ_MODE),
            "DeviceFileMinor: 2\nDeviceFileMode: 292\nDeviceFileModify: 1\n"
        );
    }

    #[test]
    fn files_of_a_topology() {
        let t = a100();
        let files = files(&t);
        let get = |p: &str| files.iter().find(|f| f.path == p).map(|f| f.text.clone());
        // a100-7x1g: GPU instances 7..=13, each with compute instance 0.
        assert_eq!(
            get("driver/nvidia/capabilities/gpu0/mig/gi7/access").unwrap(),
            "DeviceFileMinor: 66\nDeviceFileMode: 292\nDeviceFileModify: 1\n"
        );
        assert_eq!(
            get("driver/nvidia/capabilities/gpu0/mig/gi13/ci0/access").unwrap(),
            "DeviceFileMinor: 121\nDeviceFileMode: 292\nDeviceFileModify: 1\n"
        );
        assert!(get("driver/nvidia/capabilities/gpu0/mig/gi6/access").is_none());
        assert!(get("driver/nvidia/gpus/0000:07:00.0/information")
            .unwrap()
            .contains("Device Minor: \t 0\n"));
        assert!(get("driver/nvidia-caps/mig-minors")
            .unwrap()
            .contains("\ngpu0/gi7/access 66\n"));
        let caps_files = files
            .iter()
            .filter(|f| f.path.starts_with("driver/nvidia/capabilities/gpu"))
            .count();
        assert_eq!(caps_files, 14);
        // A GPU without MIG has information but no instance capabilities.
        let two = Topology::load("two-gpus-one-mig").unwrap();
        let files2 = super::files(&two);
        assert!(files2
            .iter()
            .any(|f| f.path == "driver/nvidia/gpus/0000:0f:00.0/information"));
        assert!(!files2
            .iter()
            .any(|f| f.path.starts_with("driver/nvidia/capabilities/gpu1/")));
    }
}
