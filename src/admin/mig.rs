//! `migcage mig apply|assert|export`: lay GPUs out by mig-parted's configuration format; and
//! `migcage mig capacity`, which changes nothing.
//!
//! Each reads the layout through NVML ([`NvmlMig`]: the real driver, or the simulator, the
//! same code) under the lease store's lock, with the live leases' holders attached, and plans
//! with [`crate::core::mig::plan`]. `apply` then carries the plan out still under the lock and
//! rewrites the inventory snapshot, so that container starts see the new instances at once.

use std::path::Path;

use anyhow::Context;

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

/// `migcage mig apply -f FILE -c NAME [--dry-run]`.
pub fn apply(config: &Config, file: &Path, name: &str, dry_run: bool) -> anyhow::Result<()> {
    let driver = NvmlMig::open(&config.nvml_library)?;
    let store = Store::new(&config.state_dir);
    let _lock = store.lock()?;
    let plan = plan_for(file, name, &layouts(config, &driver)?)?;
    if plan.steps.is_empty() {
        println!("the GPUs already have layout {name}; nothing to do");
        return Ok(());
    }
    if plan.changes_mig_mode() {
        eprintln!("migcage: {MODE_NOTE}");
    }
    if dry_run {
        for s in &plan.steps {
            println!("would {s}");
        }
        return Ok(());
    }
    let result = execute(&driver, &plan, &mut |s: &Step| println!("{s}"));
    // Whatever was done, the snapshot of the old layout must not be used again.
    layout_changed(config)?;
    forget_destroyed(&_lock, &driver)?;
    result?;
    println!("the GPUs now have layout {name}");
    Ok(())
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

/// `migcage mig assert -f FILE -c NAME`: success when nothing is left to do.
pub fn assert(config: &Config, file: &Path, name: &str) -> anyhow::Result<()> {
    let driver = NvmlMig::open(&config.nvml_library)?;
    let store = Store::new(&config.state_dir);
    let _lock = store.lock()?;
    let plan = plan_for(file, name, &layouts(config, &driver)?)?;
    match plan.steps.first() {
        None => {
            println!("the GPUs have layout {name}");
            Ok(())
        }
        Some(first) => anyhow::bail!(
            "the GPUs do not have layout {name}: {} changes needed, the first: {first}; 'migcage mig apply -f {} -c {name} --dry-run' lists them",
            plan.steps.len(),
            file.display()
        ),
    }
}

/// `migcage mig export [-c NAME]`: today's layout as a mig-parted file on stdout.
pub fn export(config: &Config, name: &str) -> anyhow::Result<()> {
    let driver = NvmlMig::open(&config.nvml_library)?;
    let layouts = driver.layouts()?;
    print!("{}", parted::render(name, &export_layout(&layouts)));
    Ok(())
}

/// `migcage mig capacity`: per GPU in MIG mode and profile, NVML's possible placements and
/// remaining capacity next to migcage's placement model; changes nothing (the hardware check
/// runs it). Fails when they differ anywhere.
pub fn capacity(config: &Config) -> anyhow::Result<()> {
    let driver = NvmlMig::open(&config.nvml_library)?;
    let (mut rows, mut differ) = (0, 0);
    for gpu in driver.layouts()?.iter().filter(|g| g.mig_enabled) {
        for profile in gpu.model.gi_profiles {
            let (placements, remaining) = driver.capacity(gpu.index, profile)?;
            let row = Capacity::new(gpu, profile, placements, remaining);
            println!("{row}");
            rows += 1;
            differ += usize::from(!row.agrees());
        }
    }
    if differ > 0 {
        anyhow::bail!(
            "{differ} of {rows} profiles differ between NVML and migcage's placement model (lines marked DIFFERS); migcage mig must not be used on these GPUs until its tables are fixed"
        );
    }
    Ok(())
}
