//! The driver's procfs files (src/host/inventory/procfs.rs): /proc/devices, driver/nvidia/version,
//! gpus/<bus>/information, nvidia-caps/mig-minors, capabilities/.../access. The first byte picks
//! the parser.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use migcage::host::inventory::procfs;
use migcage_fuzz::assert_one_line;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    // The inventory reads these files with read_to_string: invalid UTF-8 never reaches a parser.
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let file = Path::new("/proc/fuzz");
    let err = match which % 6 {
        0 => procfs::parse_devices(text, file).err(),
        1 => match procfs::parse_version(text, file) {
            Ok(v) => {
                assert!(!v.is_empty() && !v.contains(char::is_whitespace), "{v:?}");
                None
            }
            Err(e) => Some(e),
        },
        2 => match procfs::parse_gpu_information(text, file) {
            Ok(info) => {
                assert!(procfs::is_proc_bus_id(&info.bus_location), "{info:?}");
                None
            }
            Err(e) => Some(e),
        },
        3 => match procfs::parse_mig_minors(text, file) {
            Ok(m) => {
                for (&(gpu, gi), &minor) in &m.gi_access {
                    assert_eq!(m.gi(gpu, gi), Some(minor));
                }
                for (&(gpu, gi, ci), &minor) in &m.ci_access {
                    assert_eq!(m.ci(gpu, gi, ci), Some(minor));
                }
                None
            }
            Err(e) => Some(e),
        },
        4 => procfs::parse_cap_access(text, file).err(),
        _ => {
            let _ = procfs::is_proc_bus_id(text);
            None
        }
    };
    if let Some(e) = err {
        assert_one_line("procfs", &e.to_string());
    }
});
