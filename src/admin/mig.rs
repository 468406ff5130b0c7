//! `migcage mig apply|assert|export`: lay GPUs out by mig-parted's configuration format; and
//! `migcage mig capacity`, which changes nothing.
//!
//! Each reads the layout through NVML ([`NvmlMig`]: the real driver, or the simulator, the
//! same code) under the lease store's lock, with the live leases' holders attached, and plans
//! with [`crate::core::mig::plan`]. `apply` then carries the plan out still under the lock and
//! rewrites the inventory snapshot, so that container starts see the new instances at once.

use std::path::Path;

use anyhow::Context;
use serde_json::{json, Value};

use crate::admin::commands::print_json;
use crate::admin::exit::Reported;
use crate::config::Config;
use crate::core::mig::plan::{plan, Plan, Step};
use crate::core::mig::{config as parted, export as export_layout, Capacity, GpuLayout};
use crate::host::lease::{self, Store};
use crate::host::mig::{attach_holders, execute, layout_changed};
use crate::sys::mig::{MigDriver, NvmlMig};

/// The note for a plan that turns MIG mode on or off.
const MODE_NOTE: &str = "note: on real hardware a MIG mode change needs an idle GPU and a GPU reset (nvidia-smi --gpu-reset -i N) before it takes effect; migcage says when one is pending";

/// The layouts with their holders, read under the lock the caller holds.
fn layouts(config: &Config, driver: &dyn MigDriver) -> anyhow::Result<Vec<GpuLayout>> {
    let mut layouts = driver.layouts()?;
    let leases = Store::new(&config.state_dir).read()?;
    let (live, _) = lease::partition_live(leases, Path::new(lease::PROCESS_PROC));
    attach_holders(&mut layouts, &live);
    Ok(layouts)
}

/// The plan from today's layouts to configuration `name` of `file`.
fn plan_for(file: &Path, name: &str, layouts: &[GpuLayout]) -> anyhow::Result<Plan> {
    let text = std::fs::read_to_string(file).with_context(|| {
        format!(
            "cannot read mig-parted configuration {}; give an existing file with -f",
            file.display()
        )
    })?;
    let specs = parted::select(&text, &file.display().to_string(), name)?;
    Ok(plan(name, &specs, layouts)?)
}

/// `migcage mig apply -f FILE -c NAME [--dry-run]`; with `json`, one `mig_applied` object
/// (docs/json.md) instead of a line per step.
pub fn apply(
    config: &Config,
    file: &Path,
    name: &str,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<()> {
    let driver = NvmlMig::open(&config.nvml_library)?;
    let store = Store::new(&config.state_dir);
    let _lock = store.lock()?;
    let plan = plan_for(file, name, &layouts(config, &driver)?)?;
    let report = |done: bool| {
        json!({
            "layout": name,
            "dry_run": dry_run,
            "steps": plan.steps.iter().map(step_json).collect::<Vec<_>>(),
            "changed": done && !plan.steps.is_empty(),
        })
    };
    if plan.steps.is_empty() {
        if json {
            return print_json(&report(false));
        }
        println!("the GPUs already have layout {name}; nothing to do");
        return Ok(());
    }
    if plan.changes_mig_mode() {
        eprintln!("migcage: {MODE_NOTE}");
    }
    if dry_run {
        if json {
            return print_json(&report(false));
        }
        for s in &plan.steps {
            println!("would {s}");
        }
        return Ok(());
    }
    let result = execute(&driver, &plan, &mut |s: &Step| {
        if !json {
            println!("{s}");
        }
    });
    // Whatever was done, the snapshot of the old layout must not be used again.
    layout_changed(config)?;
    forget_destroyed(&_lock, &driver)?;
    result?;
    if json {
        return print_json(&report(true));
    }
    println!("the GPUs now have layout {name}");
    Ok(())
}

/// A plan step as `--json` shows it (`mig_step`): what, where, and the line `apply` prints.
fn step_json(s: &Step) -> Value {
    let (action, gpu, gi, ci, profile, start, enabled) = match s {
        Step::SetMigMode { gpu, enabled } => {
            ("set_mig_mode", gpu, None, None, None, None, Some(enabled))
        }
        Step::DestroyCi { gpu, gi, ci } => {
            ("destroy_ci", gpu, Some(gi), Some(ci), None, None, None)
        }
        Step::DestroyGi {
            gpu,
            gi,
            profile,
            start,
        } => (
            "destroy_gi",
            gpu,
            Some(gi),
            None,
            Some(profile.name),
            Some(start),
            None,
        ),
        Step::CreateGi {
            gpu,
            profile,
            start,
        } => (
            "create_gi",
            gpu,
            None,
            None,
            Some(profile.name),
            Some(start),
            None,
        ),
        Step::CreateCi { gpu, gi, profile } => (
            "create_ci",
            gpu,
            Some(gi),
            None,
            Some(profile.name),
            None,
            None,
        ),
    };
    json!({
        "action": action,
        "gpu": gpu,
        "gi": gi,
        "ci": ci,
        "profile": profile,
        "start": start,
        "enabled": enabled,
        "text": s.to_string(),
    })
}

/// Drop the records of instances made on demand that the layout no longer has (a plan may
/// destroy free ones), so that `migcage list` does not name their maker any more.
fn forget_destroyed(locked: &lease::Locked<'_>, driver: &dyn MigDriver) -> anyhow::Result<()> {
    let mut state = locked.read_state()?;
    if state.created.is_empty() {
        return Ok(());
    }
    let (_, kept) = crate::core::mig::demand::reconcile(&state.created, &driver.layouts()?, false);
    if kept != state.created {
        state.created = kept;
        locked.write_state(&state)?;
    }
    Ok(())
}

/// `migcage mig assert -f FILE -c NAME`: success when nothing is left to do; with `json`, one
/// `mig_asserted` object either way (exit 1 when the layout differs).
pub fn assert(config: &Config, file: &Path, name: &str, json: bool) -> anyhow::Result<()> {
    let driver = NvmlMig::open(&config.nvml_library)?;
    let store = Store::new(&config.state_dir);
    let _lock = store.lock()?;
    let plan = plan_for(file, name, &layouts(config, &driver)?)?;
    if json {
        print_json(&json!({
            "layout": name,
            "matches": plan.steps.is_empty(),
            "changes": plan.steps.iter().map(step_json).collect::<Vec<_>>(),
        }))?;
    }
    match plan.steps.first() {
        None if json => Ok(()),
        None => {
            println!("the GPUs have layout {name}");
            Ok(())
        }
        Some(first) => {
            let line = format!(
                "the GPUs do not have layout {name}: {} changes needed, the first: {first}; 'migcage mig apply -f {} -c {name} --dry-run' lists them",
                plan.steps.len(),
                file.display()
            );
            if json {
                return Err(Reported(line).into());
            }
            anyhow::bail!(line)
        }
    }
}

/// `migcage mig export [-c NAME]`: today's layout as a mig-parted file on stdout; with `json`,
/// one `mig_exported` object (each GPU's layout on its own).
pub fn export(config: &Config, name: &str, json: bool) -> anyhow::Result<()> {
    let driver = NvmlMig::open(&config.nvml_library)?;
    let layouts = driver.layouts()?;
    if json {
        let gpus: Vec<Value> = layouts
            .iter()
            .map(|g| {
                json!({
                    "gpu": g.index,
                    "uuid": g.uuid,
                    "model": g.model.name,
                    "mig_enabled": g.mig_enabled,
                    "mig_devices": g.counts(),
                })
            })
            .collect();
        return print_json(&json!({"config": name, "gpus": gpus}));
    }
    print!("{}", parted::render(name, &export_layout(&layouts)));
    Ok(())
}

/// `migcage mig capacity`: per GPU in MIG mode and profile, NVML's possible placements and
/// remaining capacity next to migcage's placement model; changes nothing (the hardware check
/// runs it). Fails when they differ anywhere. With `json`, one `mig_capacity` object.
pub fn capacity(config: &Config, json: bool) -> anyhow::Result<()> {
    let driver = NvmlMig::open(&config.nvml_library)?;
    let mut rows = Vec::new();
    for gpu in driver.layouts()?.iter().filter(|g| g.mig_enabled) {
        for profile in gpu.model.gi_profiles {
            let (placements, remaining) = driver.capacity(gpu.index, profile)?;
            let row = Capacity::new(gpu, profile, placements, remaining);
            if !json {
                println!("{row}");
            }
            rows.push(row);
        }
    }
    let differ = rows.iter().filter(|r| !r.agrees()).count();
    if json {
        let placements = |v: &[migcage_topology::Placement]| -> Vec<Value> {
            v.iter()
                .map(|p| json!({"start": p.start, "size": p.size}))
                .collect()
        };
        let profiles: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "gpu": r.gpu,
                    "profile": r.profile.name,
                    "nvml_placements": placements(&r.nvml_placements),
                    "nvml_remaining": r.nvml_remaining,
                    "model_placements": placements(&r.profile.placements()),
                    "model_remaining": r.model_remaining,
                    "agrees": r.agrees(),
                })
            })
            .collect();
        print_json(&json!({"profiles": profiles}))?;
    }
    if differ > 0 {
        let line = format!(
            "{differ} of {} profiles differ between NVML and migcage's placement model (lines marked DIFFERS, or \"agrees\": false); migcage mig must not be used on these GPUs until its tables are fixed",
            rows.len()
        );
        if json {
            return Err(Reported(line).into());
        }
        anyhow::bail!(line);
    }
    Ok(())
}
