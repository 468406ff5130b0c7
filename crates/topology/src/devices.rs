//! The driver's device numbers: character device majors and the MIG caps minors of
//! `/proc/driver/nvidia-caps/mig-minors`.

/// Default character device majors the simulator uses for the dynamically numbered drivers.
pub const DEFAULT_UVM_MAJOR: u32 = 510;
pub const DEFAULT_CAPS_MAJOR: u32 = 509;
/// The nvidia frontend major is fixed by the driver.
pub const FRONTEND_MAJOR: u32 = 195;

/// Caps minors of `/proc/driver/nvidia-caps/mig-minors`.
pub const MIG_CONFIG_MINOR: u32 = 1;
pub const MIG_MONITOR_MINOR: u32 = 2;
/// The driver reserves this many GPUs, GPU instances per GPU and compute instances per GPU
/// instance in mig-minors.
pub const MAX_GPUS: u32 = 32;
pub const MAX_GPU_INSTANCES: u32 = 15;
pub const MAX_COMPUTE_INSTANCES: u32 = 8;

/// Caps minor of `gpu<gpu_minor>/gi<gi>/access`.
pub fn gi_access_minor(gpu_minor: u32, gi: u32) -> u32 {
    3 + gpu_minor * MAX_GPU_INSTANCES * (1 + MAX_COMPUTE_INSTANCES)
        + gi * (1 + MAX_COMPUTE_INSTANCES)
}

/// Caps minor of `gpu<gpu_minor>/gi<gi>/ci<ci>/access`.
pub fn ci_access_minor(gpu_minor: u32, gi: u32, ci: u32) -> u32 {
    gi_access_minor(gpu_minor, gi) + 1 + ci
}

/// `DeviceFileMode` of every GPU/compute instance access capability (0444).
pub const CAP_READ_MODE: u32 = 0o444;

/// A capability file of `/proc/driver/nvidia/capabilities` (`DeviceFileModify` is 1: the driver
/// manages the node; the mode in decimal as the driver prints it).
pub fn capability_file(minor: u32, mode: u32) -> String {
    format!("DeviceFileMinor: {minor}\nDeviceFileMode: {mode}\nDeviceFileModify: 1\n")
}

/// Where the access capabilities of an instance live below `/proc/driver/nvidia/capabilities`
/// (`gpu0/mig/gi7`, or `gpu0/mig/gi7/ci0` for a compute instance), and their caps minor.
pub fn instance_capability(gpu_minor: u32, gi: u32, ci: Option<u32>) -> (String, u32) {
    match ci {
        None => (
            format!("gpu{gpu_minor}/mig/gi{gi}"),
            gi_access_minor(gpu_minor, gi),
        ),
        Some(ci) => (
            format!("gpu{gpu_minor}/mig/gi{gi}/ci{ci}"),
            ci_access_minor(gpu_minor, gi, ci),
        ),
    }
}

/// The whole text of `/proc/driver/nvidia-caps/mig-minors` as the driver writes it.
pub fn mig_minors_file() -> String {
    let mut s = String::with_capacity(128 * 1024);
    s.push_str(&format!(
        "config {MIG_CONFIG_MINOR}\nmonitor {MIG_MONITOR_MINOR}\n"
    ));
    for g in 0..MAX_GPUS {
        for gi in 0..MAX_GPU_INSTANCES {
            s.push_str(&format!(
                "gpu{g}/gi{gi}/access {}\n",
                gi_access_minor(g, gi)
            ));
            for ci in 0..MAX_COMPUTE_INSTANCES {
                s.push_str(&format!(
                    "gpu{g}/gi{gi}/ci{ci}/access {}\n",
                    ci_access_minor(g, gi, ci)
                ));
            }
        }
    }
    s
}
