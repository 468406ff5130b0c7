//! Layouts for the tests of planning and of instances made on demand.

use migcage_topology::models::model;

use super::{CiState, GiState, GpuLayout};

/// GPU `index` (UUID `GPU-<index>`) of model `model_key` in MIG mode, with one GPU instance per
/// `(profile, start, holder)` of `instances`: ids from `first_gi`, each with one compute
/// instance (id 0) whose UUID `uuid` makes from the instance's position.
pub fn layout(
    index: u32,
    model_key: &str,
    first_gi: u32,
    uuid: impl Fn(usize) -> String,
    instances: &[(&str, u32, Option<&str>)],
) -> GpuLayout {
    let m = model(model_key).unwrap();
    GpuLayout {
        index,
        uuid: format!("GPU-{index}"),
        model: m,
        mig_enabled: true,
        instances: instances
            .iter()
            .enumerate()
            .map(|(i, (name, start, holder))| GiState {
                id: first_gi + i as u32,
                profile: m.gi_profile(name).unwrap(),
                start: *start,
                compute_instances: vec![CiState {
                    id: 0,
                    uuid: uuid(i),
                }],
                held_by: holder.map(str::to_string),
            })
            .collect(),
    }
}
