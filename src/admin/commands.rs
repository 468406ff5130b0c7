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
    match lease::Store::new(&config.state_dir).read_state() {
        Ok(state) => {
            super::list::attach_created(&mut listing, &state.created);
            let proc = Path::new(lease::PROCESS_PROC);
            let (live, stale) = lease::partition_live(state.leases, proc);
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
        print_json(&listing)?;
    } else {
        print!("{}", super::list::render_table(&listing));
    }
    Ok(())
}

/// What `migcage config set` did (`--json`: `config_set`, docs/json.md).
#[derive(Debug, serde::Serialize)]
pub struct ConfigSet {
    pub file: String,
    pub key: String,
    /// The value as migcage now reads it, typed.
    pub value: serde_json::Value,
    pub dry_run: bool,
    /// Whether the file's text changes (with `dry_run`: would change).
    pub changed: bool,
    /// The unified diff of the change ("" when none).
    pub diff: String,
}

impl ConfigSet {
    /// For people: the diff with `--dry-run`, else the line that says what was set.
    pub fn text(&self) -> String {
        if self.dry_run {
            self.diff.clone()
        } else {
            format!("{}: {} = {}\n", self.file, self.key, self.value)
        }
    }
}

/// `migcage config set KEY VALUE [--dry-run]` on the file `path` (made when absent): what it
/// changed (with `dry_run`, the file untouched).
pub fn config_set(path: &Path, key: &str, value: &str, dry_run: bool) -> anyhow::Result<ConfigSet> {
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => anyhow::bail!(
            "cannot read {}: {e}; run as root, or name another file with --config",
            path.display()
        ),
    };
    let new = super::config_key::set(&old, path, key, value)?;
    let label = path.display().to_string();
    let typed = super::config_key::get_json(&Config::parse(&new, path)?, key)?;
    let out = ConfigSet {
        file: label.clone(),
        key: key.to_string(),
        value: typed,
        dry_run,
        changed: old != new,
        diff: super::configure::unified_diff(&old, &new, &label, &label),
    };
    if !dry_run {
        crate::host::files::write_atomically(path, new.as_bytes()).map_err(|e| {
            anyhow::anyhow!(
                "cannot write {label}: {e}; run as root, or name another file with --config"
            )
        })?;
    }
    Ok(out)
}

/// Print `value` as the indented JSON of a `--json` report.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `1 GPU`, `2 GPUs`: a count with its noun, singular or plural.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `simulate --json`: what was made (docs/json.md).
pub fn simulated(s: &crate::simulate::Summary) -> serde_json::Value {
    serde_json::json!({
        "topology": s.topology,
        "driver_version": s.driver_version,
        "root": s.root,
        "config": s.config,
        "gpus": s.gpus,
        "mig_gpus": s.mig_gpus,
        "mig_devices": s.mig_devices,
        "device_nodes": s.device_nodes,
    })
}

/// `configure --json`: what was (or, in a dry run, would be) changed (docs/json.md).
pub fn configured(o: &super::configure::Outcome) -> serde_json::Value {
    serde_json::json!({
        "target": clap::ValueEnum::to_possible_value(&o.target).map(|v| v.get_name().to_string()),
        "file": o.file,
        "binary": o.binary,
        "changed": o.changed,
        "dry_run": o.dry_run,
        "diff": o.diff,
        "backup": o.backup,
        "link": o.link,
    })
}

/// `migcage refresh`: discover through NVML and rewrite the inventory snapshot.
pub fn refresh(config: &Config, json: bool) -> anyhow::Result<()> {
    let found = discover_and_save(config)?;
    let path = found.saved?;
    let inv = &found.inventory;
    let mig_devices = inv.gpus.iter().map(|g| g.mig_devices.len()).sum::<usize>();
    if json {
        return print_json(&serde_json::json!({
            "snapshot": path,
            "driver_version": inv.driver_version,
            "gpus": inv.gpus.len(),
            "mig_devices": mig_devices,
        }));
    }
    println!(
        "inventory snapshot {}: {}, {}, driver {}",
        path.display(),
        count(inv.gpus.len(), "GPU"),
        count(mig_devices, "MIG device"),
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
    use crate::backend::pipeline::{self, PipelineError};
    let (request, plan, would_create) = match pipeline::plan_for_spec(config, &spec) {
        Ok((request, plan)) => (request, plan, None),
        Err(PipelineError::WouldCreate(w)) => {
            let request = crate::core::request::parse(&spec, &config.requests)?;
            (request, None, Some(*w))
        }
        Err(e) => return Err(e.into()),
    };
    let container = plan
        .as_ref()
        .and_then(|p| crate::backend::hook::container_work(config, &bundle, &spec, p).ok());
    let e = crate::admin::explain::Explanation {
        request,
        plan,
        container,
        would_create,
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&crate::admin::explain::to_json(&e))?
        );
    } else {
        print!("{}", crate::admin::explain::render(&e));
    }
    Ok(())
}

/// `migcage release <container-id>`: one line per released instance on stdout (`json`: the
/// lease objects of `list`).
pub fn release(config: &Config, container: &str, json: bool) -> anyhow::Result<()> {
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
    let live = |l: &lease::Lease| {
        lease::is_live(l, lease::read_stat(proc, &l.pid.to_string()).ok().flatten())
    };
    if json {
        let views: Vec<_> = released
            .iter()
            .map(|l| super::list::LeaseView::new(l, live(l)))
            .collect();
        return print_json(&serde_json::json!({ "released": views }));
    }
    for l in &released {
        println!(
            "released {} (held by container {} since {}, asked {})",
            l.uuid,
            l.container,
            lease::format_time(l.since),
            l.asked
        );
        if live(l) {
            eprintln!(
                "migcage: note: container {}'s process {} still runs and keeps its devices; {} may now be given to another container",
                l.container, l.pid, l.uuid
            );
        }
    }
    Ok(())
}
