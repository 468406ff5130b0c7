//! From a container's spec to its plan, with the host I/O that takes: the one entry point the
//! back ends share (the hook, `explain`, the runtime wrapper).
//!
//! request (pure) -> inventory (NVML + /proc) -> plan (pure). Host state that a request needs
//! beyond the inventory (such as which instances are already handed out) is read here too, so
//! that the back ends never differ in what a container gets.

use crate::config::Config;
use crate::inventory::{self, InventoryError};
use crate::plan::{self, Plan, PlanError};
use crate::request::{self, Request, RequestError};

/// Why a spec cannot be planned. One line each.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// The request a spec makes and, unless it asks for nothing, its plan on this host. A container
/// that asks for nothing never reaches the driver (no NVML, no /proc reads).
pub fn plan_for_spec(
    config: &Config,
    spec: &serde_json::Value,
) -> Result<(Request, Option<Plan>), PipelineError> {
    let request = request::parse(spec, &config.requests)?;
    if request.is_noop() {
        return Ok((request, None));
    }
    let inv = inventory::discover(config)?;
    let plan = plan::resolve(&request, &inv, &config.dev_root)?;
    Ok((request, Some(plan)))
}
