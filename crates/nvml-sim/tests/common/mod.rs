//! Helpers shared by the integration tests: where cargo put the cdylib, and topology files.

#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};

use migcage_topology::Topology;

/// The simulated `libnvidia-ml.so.1` cargo built next to this test.
///
/// The test runs from `target/<profile>/deps/`; cargo writes the cdylib there when it builds
/// the library for the tests, and uplifts a copy to `target/<profile>/` for top-level builds.
/// The newer of the two wins, so a stale uplifted copy is never tested by mistake.
pub fn cdylib() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test executable has a directory");
    let candidates = [
        deps.join("libnvidia_ml_sim.so"),
        deps.join("..").join("libnvidia_ml_sim.so"),
    ];
    candidates
        .iter()
        .filter_map(|p| Some((std::fs::metadata(p).ok()?.modified().ok()?, p.clone())))
        .max()
        .map(|(_, p)| p)
        .unwrap_or_else(|| panic!("no libnvidia_ml_sim.so in {} or its parent", deps.display()))
}

/// Write a topology's resolved TOML into `dir` and return its path.
pub fn write_topology(dir: &Path, topo: &Topology) -> PathBuf {
    let path = dir.join(format!("{}.toml", topo.name));
    std::fs::write(&path, topo.to_toml()).expect("write topology");
    path
}

/// NVML's 8-digit-domain upper-case bus id, and the 4-digit legacy one, from a topology's.
pub fn bus_ids(pci_bus_id: &str) -> (String, String) {
    let upper = pci_bus_id.to_ascii_uppercase();
    let (domain, rest) = upper.split_once(':').expect("bus id has a domain");
    (
        format!("{:0>8}:{rest}", domain),
        format!("{}:{rest}", &domain[domain.len() - 4..]),
    )
}
