//! CDI specs (src/backend/cdi/) as `cdi list` reads them from /etc/cdi and /var/run/cdi: errors are
//! one line; a spec that parses is written (JSON and YAML) and reads back to itself; the checks
//! run on a parsed spec never panic. The first byte picks the file name (JSON or YAML).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use migcage::backend::cdi::{self, Format};
use migcage_fuzz::assert_one_line;

fuzz_target!(|data: &[u8]| {
    let Some((&flag, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let path = if flag & 1 == 1 {
        Path::new("/etc/cdi/fuzz.json")
    } else {
        Path::new("/etc/cdi/fuzz.yaml")
    };
    let spec = match cdi::parse(text, path) {
        Ok(s) => s,
        Err(e) => return assert_one_line("cdi::parse", &e.to_string()),
    };
    for (format, name) in [
        (Format::Json, "/x/back.json"),
        (Format::Yaml, "/x/back.yaml"),
    ] {
        let printed = cdi::to_text(&spec, format).expect("a parsed spec serializes");
        let back = cdi::parse(&printed, Path::new(name))
            .unwrap_or_else(|e| panic!("a written spec does not parse: {e}\n{printed}"));
        assert_eq!(
            back, spec,
            "written as {name} and read back, the spec differs"
        );
    }
    let _ = cdi::minimum_version(&spec);
    let _ = cdi::is_migcage_spec(&spec);
    for d in &spec.devices {
        let _ = cdi::valid_device_name(&d.name);
        let _ = cdi::device_id(&d.container_edits);
        for n in &d.container_edits.device_nodes {
            let _ = n.describe();
        }
    }
    let _ = cdi::staleness(path, &spec, &spec);
    let report = cdi::report(path, &spec, Some(&spec));
    let _ = cdi::render(&report);
});
