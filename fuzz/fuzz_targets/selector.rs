//! One item of a device list (`DeviceSelector`) and a driver capability list
//! (`DriverCapabilities`): what parses prints back to itself; errors are one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use migcage::core::request::{DeviceSelector, DriverCapabilities};
use migcage_fuzz::{assert_one_line, check_selector_round_trip};

fuzz_target!(|text: &str| {
    match text.parse::<DeviceSelector>() {
        Ok(s) => check_selector_round_trip(&s),
        Err(e) => assert_one_line("DeviceSelector", &e),
    }
    match text.parse::<DriverCapabilities>() {
        Ok(c) => {
            let printed = c.to_string();
            let back: DriverCapabilities = printed.parse().unwrap_or_else(|e| {
                panic!("{c:?} prints as {printed:?}, which does not parse: {e}")
            });
            assert_eq!(back, c, "{printed:?} does not read back to itself");
        }
        Err(e) => assert_one_line("DriverCapabilities", &e),
    }
});
