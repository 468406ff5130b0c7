//! Topology files (TOML or JSON; read by `migcage simulate` and by the simulated NVML): errors
//! are one line, and a resolved topology written back as TOML resolves to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use migcage_fuzz::assert_one_line;
use migcage_topology::Topology;

fuzz_target!(|data: &[u8]| {
    let Some((&flag, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match Topology::parse(text, flag & 1 == 1, "fuzz.toml") {
        Ok(t) => {
            let printed = t.to_toml();
            let back = Topology::parse(&printed, false, "printed")
                .unwrap_or_else(|e| panic!("printed topology does not parse: {e}\n{printed}"));
            assert_eq!(back, t, "printed topology resolves differently:\n{printed}");
        }
        Err(e) => assert_one_line("Topology::parse", &e.to_string()),
    }
});
