//! The operator commands as `migcage` runs them (`list`, `refresh`, `release`, `explain`): read
//! what they need, call the module that does the work, print the result.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::host::inventory::snapshot::discover_and_save;
use crate::host::lease;

/// `migcage list [--json]`: every GPU and MIG device with its holder, from a fresh discovery
/// (which rewrites the snapshot).
pub fn list(config: &Config, json: bool) -> anyhow::Result<()> {
    let inv = crate::backend::commands::discover(config)?;
    let mut listing = super::list::listing(&inv, &config.dev_root);
    match lease::Store::new(&config.state_dir).read() {
        Ok(leases) => {
            let proc = Path::new(lease::PROCESS_PROC);
            let (live, stale) = lease::partition_live(leases, proc);
            let all: Vec<_> = live
                .into_iter()
                .map(|l| (l, true))
                .chain(stale.into_iter().map(|l| (l, false)))
                .collect();
            super::list::attach_leases(&mut listing, &all);
        }
        Err(e) => eprintln!("migcage: note: leases not shown: {e}"),
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&listing)?);
    } else {
        print!("{}", super::list::render_table(&listing));
    }
    Ok(())
}

/// `migcage refresh`: discover through NVML and rewrite the inventory snapshot.
pub fn refresh(config: &Config) -> anyhow::Result<()> {
    let found = discover_and_save(config)?;
    let path = found.saved?;
    let inv = &found.inventory;
    println!(
        "inventory snapshot {}: {} GPUs, {} MIG devices, driver {}",
        path.display(),
        inv.gpus.len(),
        inv.gpus.iter().map(|g| g.mig_devices.len()).sum::<usize>(),
        inv.driver_version
    );
    Ok(())
}

/// `migcage explain`: what migcage would do to a container (from its bundle or a config.json
/// file), without doing it.
pub fn explain(
    config: &Config,
    bundle: Option<PathBuf>,
    spec_file: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    use crate::backend::hook::state;
    let (bundle, spec) = match (bundle, spec_file) {
        (Some(b), _) => {
            let spec = state::read_config(&b)?;
            (b, spec)
        }
        (None, Some(f)) => {
            // The one config.json reader: the size limit and checks the back ends apply.
            let spec = crate::backend::spec::read(&f)?.value;
            (f.parent().map(Path::to_path_buf).unwrap_or_default(), spec)
        }
        (None, None) => anyhow::bail!("give --bundle DIR or --spec FILE"),
    };
    let (request, plan) = crate::backend::pipeline::plan_for_spec(config, &spec)?;
    let container = plan
        .as_ref()
        .and_then(|p| crate::backend::hook::container_work(config, &bundle, &spec, p).ok());
    let e = crate::admin::explain::Explanation {
        request,
        plan,
        container,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&e)?);
    } else {
        print!("{}", crate::admin::explain::render(&e));
    }
    Ok(())
}

/// `migcage release <container-id>`: one line per released instance on stdout.
pub fn release(config: &Config, container: &str) -> anyhow::Result<()> {
    let released = crate::backend::pipeline::release_container(config, container)?;
    if released.is_empty() {
        let mut holders: Vec<String> = lease::Store::new(&config.state_dir)
            .read()?
            .into_iter()
            .map(|l| l.container)
            .collect();
        holders.sort();
        holders.dedup();
        let holders = if holders.is_empty() {
            "none".to_string()
        } else {
            holders.join(", ")
        };
        anyhow::bail!(
            "release {container}: container {container:?} holds no lease (containers holding leases: {holders}); 'migcage list' shows each instance's holder"
        );
    }
    let proc = Path::new(lease::PROCESS_PROC);
    for l in &released {
        println!(
            "released {} (held by container {} since {}, asked {})",
            l.uuid,
            l.container,
            lease::format_time(l.since),
            l.asked
        );
        if lease::is_live(l, lease::read_stat(proc, &l.pid.to_string()).ok().flatten()) {
            eprintln!(
                "migcage: note: container {}'s process {} still runs and keeps its devices; {} may now be given to another container",
                l.container, l.pid, l.uuid
            );
        }
    }
    Ok(())
}
