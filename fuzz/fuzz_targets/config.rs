//! The configuration file (`Config::parse`): errors are one line, and what parses prints back
//! (as `migcage config` prints it) to the same configuration.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use migcage::config::Config;
use migcage_fuzz::assert_one_line;

fuzz_target!(|text: &str| {
    let path = Path::new("/etc/migcage/config.toml");
    match Config::parse(text, path) {
        Ok(c) => {
            let printed = toml::to_string_pretty(&c).expect("a configuration serializes");
            let back = Config::parse(&printed, path)
                .unwrap_or_else(|e| panic!("printed configuration does not parse: {e}\n{printed}"));
            assert_eq!(
                back, c,
                "printed configuration reads back differently:\n{printed}"
            );
        }
        Err(e) => assert_one_line("Config::parse", &e.to_string()),
    }
});
