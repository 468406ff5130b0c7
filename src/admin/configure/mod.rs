//! `migcage configure docker|podman|containerd|crio`: register migcage with a container engine.
//!
//! Each edit is idempotent (a second run changes nothing and says so), keeps the rest of the file
//! (JSON entries keep their order and text; TOML keeps its comments and layout, through
//! `toml_edit`), backs up the file it changes (`FILE.migcage-backup-<UTC time>`), replaces it
//! atomically, and with `--dry-run` only prints the unified diff.
//!
//! - **docker**: `/etc/docker/daemon.json` gets `runtimes.migcage = {"path": ".../migcage-runtime"}`.
//!   A runtime entry cannot pass a subcommand: Docker turns `runtimeArgs` into a generated
//!   `#!/bin/sh` script running `path args $@` (unquoted, so arguments are split again), so the
//!   entry names the `migcage-runtime` link instead, under which migcage is `migcage runtime`.
//! - **containerd**: the runc shim (`io.containerd.runc.v2`) with `options.BinaryName` = the same
//!   link, under `plugins."io.containerd.grpc.v1.cri".containerd.runtimes.migcage` (config version
//!   2), `plugins."io.containerd.cri.v1.runtime"...` (version 3) or `plugins.cri...` (version 1).
//!   A new entry starts from the `runc` entry's settings (such as `SystemdCgroup`).
//! - **podman** and **crio**: the OCI hooks.d file (as shipped in the repository's `hooks/`)
//!   running `migcage hook prestart`, in `/usr/share/containers/oci/hooks.d`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use toml_edit::{DocumentMut, Item, Table, TableLike};

use crate::backend::runtime::RUNTIME_ARGV0;
use crate::host::files::write_atomically;

/// The engine to configure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    Docker,
    Podman,
    Containerd,
    Crio,
}

/// The hooks.d file name (Podman and CRI-O read every `*.json` of their hooks directories).
pub const HOOK_FILE: &str = "oci-migcage-hook.json";
/// Where Podman and CRI-O look for hooks by default.
pub const DEFAULT_HOOKS_DIR: &str = "/usr/share/containers/oci/hooks.d";
pub const DEFAULT_DOCKER_CONFIG: &str = "/etc/docker/daemon.json";
pub const DEFAULT_CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";
/// The runtime's name in Docker and containerd (`docker run --runtime=migcage`, a Kubernetes
/// RuntimeClass handler).
pub const RUNTIME_NAME: &str = "migcage";

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Docker => "docker",
            Target::Podman => "podman",
            Target::Containerd => "containerd",
            Target::Crio => "crio",
        }
    }

    fn uses_hook(self) -> bool {
        matches!(self, Target::Podman | Target::Crio)
    }

    /// The file edited when `--config-file` is not given.
    pub fn default_file(self, hooks_dir: Option<&Path>) -> PathBuf {
        match self {
            Target::Docker => DEFAULT_DOCKER_CONFIG.into(),
            Target::Containerd => DEFAULT_CONTAINERD_CONFIG.into(),
            Target::Podman | Target::Crio => hooks_dir
                .unwrap_or(Path::new(DEFAULT_HOOKS_DIR))
                .join(HOOK_FILE),
        }
    }
}

/// What to configure, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub target: Target,
    /// The file to edit instead of the engine's default one (for podman and crio: the hook file).
    pub config_file: Option<PathBuf>,
    /// podman and crio: the hooks directory to write the hook file in.
    pub hooks_dir: Option<PathBuf>,
    /// docker and containerd: the `migcage-runtime` executable to register; podman and crio: the
    /// migcage executable the hook runs. Default: beside the running migcage.
    pub binary: Option<PathBuf>,
    /// docker and containerd: make migcage the default runtime.
    pub set_default: bool,
    /// Print the diff; change nothing.
    pub dry_run: bool,
    /// migcage's own configuration file when it is not the default one: the hook gets it in its
    /// environment.
    pub migcage_config: Option<PathBuf>,
}

/// Why configuring failed. One line each; nothing was changed unless it says so.
#[derive(Debug, thiserror::Error)]
pub enum ConfigureError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}; fix the file (or point --config-file at another one) and run configure again")]
    Invalid { path: PathBuf, message: String },
    #[error("cannot back up {path} to {backup}: {source}; nothing was changed")]
    Backup {
        path: PathBuf,
        backup: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
}

/// What [`configure`] did (or, with `dry_run`, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub target: Target,
    pub file: PathBuf,
    /// The executable registered (the runtime link, or migcage for a hook).
    pub binary: PathBuf,
    pub changed: bool,
    pub diff: String,
    pub backup: Option<PathBuf>,
    /// The `migcage-runtime` link made beside migcage (or to be made, in a dry run).
    pub link: Option<PathBuf>,
    pub dry_run: bool,
}

/// Calendar date and time of `t` in UTC: (year, month, day, hour, minute, second).
pub fn civil_utc(t: SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

// ---------------------------------------------------------------------------------------------
// Unified diff

/// A unified diff of two texts (3 lines of context), empty when they are equal.
pub fn unified_diff(old: &str, new: &str, old_label: &str, new_label: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    if a == b {
        return String::new();
    }
    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        Same,
        Del,
        Add,
    }
    // (kind, line of a before it, line of b before it)
    let mut ops: Vec<(Kind, usize, usize)> = Vec::with_capacity(a.len() + b.len());
    let (n, m) = (a.len(), b.len());
    if n.saturating_mul(m) <= 16_000_000 {
        // Longest common subsequence, from the end.
        let w = m + 1;
        let mut t = vec![0u32; (n + 1) * w];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                t[i * w + j] = if a[i] == b[j] {
                    t[(i + 1) * w + j + 1] + 1
                } else {
                    t[(i + 1) * w + j].max(t[i * w + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && a[i] == b[j] {
                ops.push((Kind::Same, i, j));
                i += 1;
                j += 1;
            } else if i < n && (j == m || t[(i + 1) * w + j] >= t[i * w + j + 1]) {
                ops.push((Kind::Del, i, j));
                i += 1;
            } else {
                ops.push((Kind::Add, i, j));
                j += 1;
            }
        }
    } else {
        // Too large to compare line by line: one hunk replacing everything.
        ops.extend((0..n).map(|i| (Kind::Del, i, 0)));
        ops.extend((0..m).map(|j| (Kind::Add, n, j)));
    }
    const CONTEXT: usize = 3;
    let changes: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != Kind::Same).collect();
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for &c in &changes {
        match groups.last_mut() {
            Some((_, end)) if c - *end <= 2 * CONTEXT + 1 => *end = c,
            _ => groups.push((c, c)),
        }
    }
    let mut out = format!("--- {old_label}\n+++ {new_label}\n");
    for (first, last) in groups {
        let lo = first.saturating_sub(CONTEXT);
        let hi = (last + CONTEXT + 1).min(ops.len());
        let span = &ops[lo..hi];
        let a_len = span.iter().filter(|o| o.0 != Kind::Add).count();
        let b_len = span.iter().filter(|o| o.0 != Kind::Del).count();
        let start = |pos: usize, len: usize| if len == 0 { pos } else { pos + 1 };
        let _ = writeln!(
            out,
            "@@ -{},{} +{},{} @@",
            start(span[0].1, a_len),
            a_len,
            start(span[0].2, b_len),
            b_len
        );
        for &(kind, i, j) in span {
            let _ = match kind {
                Kind::Same => writeln!(out, " {}", a[i]),
                Kind::Del => writeln!(out, "-{}", a[i]),
                Kind::Add => writeln!(out, "+{}", b[j]),
            };
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Docker: daemon.json

/// A JSON object's entries in file order, each value as its original text.
struct Entries(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut v = Vec::new();
                while let Some((k, raw)) = map.next_entry::<String, Box<RawValue>>()? {
                    v.push((k, raw));
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// Entries with their values as text (original, or rendered by us).
type TextEntries = Vec<(String, String)>;

fn parse_entries(text: &str, what: &str) -> Result<TextEntries, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let e: Entries = serde_json::from_str(text).map_err(|e| format!("{what}: {e}"))?;
    Ok(e.0
        .into_iter()
        .map(|(k, v)| (k, v.get().to_string()))
        .collect())
}

/// The indentation the file uses (its first indented line), two spaces when none.
fn indent_unit(text: &str) -> String {
    text.lines()
        .find_map(|l| {
            let ws: String = l.chars().take_while(|c| *c == ' ' || *c == '\t').collect();
            (!ws.is_empty() && ws.len() < l.len()).then_some(ws)
        })
        .unwrap_or_else(|| "  ".into())
}

fn render_value(v: &Value, depth: usize, unit: &str) -> String {
    use serde::Serialize;
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(unit.as_bytes());
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    v.serialize(&mut ser).expect("a Value serializes");
    String::from_utf8(buf)
        .expect("JSON is UTF-8")
        .replace('\n', &format!("\n{}", unit.repeat(depth)))
}

fn render_object(entries: &TextEntries, depth: usize, unit: &str) -> String {
    if entries.is_empty() {
        return "{}".into();
    }
    let mut s = String::from("{\n");
    for (i, (k, v)) in entries.iter().enumerate() {
        s.push_str(&unit.repeat(depth + 1));
        s.push_str(&serde_json::to_string(k).expect("a string serializes"));
        s.push_str(": ");
        s.push_str(v);
        if i + 1 < entries.len() {
            s.push(',');
        }
        s.push('\n');
    }
    s.push_str(&unit.repeat(depth));
    s.push('}');
    s
}

/// Set `key` to `value` in `entries` (an object at `depth`); false when it already has it.
fn set_entry(
    entries: &mut TextEntries,
    key: &str,
    value: &Value,
    depth: usize,
    unit: &str,
) -> bool {
    let text = render_value(value, depth + 1, unit);
    match entries.iter_mut().find(|(k, _)| k == key) {
        Some((_, raw)) => {
            if serde_json::from_str::<Value>(raw).ok().as_ref() == Some(value) {
                return false;
            }
            *raw = text;
        }
        None => entries.push((key.to_string(), text)),
    }
    true
}

/// daemon.json with `runtimes.migcage` naming `binary` (and `default-runtime`, if asked). Returns
/// the text unchanged when it already says so; every other entry keeps its place and its text.
pub fn docker_edit(old: &str, binary: &Path, set_default: bool) -> Result<String, String> {
    let mut top = parse_entries(old, "not a JSON object")?;
    let unit = indent_unit(old);
    let want = json!({"path": binary.display().to_string()});
    let mut changed = false;
    match top.iter_mut().find(|(k, _)| k == "runtimes") {
        Some((_, raw)) => {
            let mut runtimes = parse_entries(raw, "\"runtimes\" is not an object")?;
            if set_entry(&mut runtimes, RUNTIME_NAME, &want, 1, &unit) {
                *raw = render_object(&runtimes, 1, &unit);
                changed = true;
            }
        }
        None => {
            let mut runtimes = Vec::new();
            set_entry(&mut runtimes, RUNTIME_NAME, &want, 1, &unit);
            top.push(("runtimes".into(), render_object(&runtimes, 1, &unit)));
            changed = true;
        }
    }
    if set_default {
        changed |= set_entry(&mut top, "default-runtime", &json!(RUNTIME_NAME), 0, &unit);
    }
    if !changed {
        return Ok(old.to_string());
    }
    Ok(render_object(&top, 0, &unit) + "\n")
}

// ---------------------------------------------------------------------------------------------
// containerd: config.toml

/// The CRI plugin's `containerd` table for each config version.
fn cri_path(version: i64) -> Option<[&'static str; 3]> {
    match version {
        1 => Some(["plugins", "cri", "containerd"]),
        2 => Some(["plugins", "io.containerd.grpc.v1.cri", "containerd"]),
        3 => Some(["plugins", "io.containerd.cri.v1.runtime", "containerd"]),
        _ => None,
    }
}

/// The table `key` of `item` (made, implicit, when absent); an error naming `at` otherwise.
fn child<'a>(item: &'a mut Item, key: &str, at: &mut String) -> Result<&'a mut Item, String> {
    let here = at.clone();
    if !at.is_empty() {
        at.push('.');
    }
    at.push_str(&if key.contains('.') {
        format!("{key:?}")
    } else {
        key.to_string()
    });
    let t = item
        .as_table_like_mut()
        .ok_or_else(|| format!("{here} is not a table"))?;
    if t.get(key).is_none() {
        let mut new = Table::new();
        new.set_implicit(true);
        t.insert(key, Item::Table(new));
    }
    let c = t.get_mut(key).expect("just made");
    if c.as_table_like().is_none() {
        return Err(format!("{at} is a {}, expected a table", c.type_name()));
    }
    Ok(c)
}

fn table_like(item: &mut Item) -> &mut dyn TableLike {
    item.as_table_like_mut().expect("checked by child()")
}

/// A table's plain keys and values (no subtables).
type KeyValues = Vec<(String, Item)>;

/// Set a string key unless it already has that value (so an unchanged file stays byte-identical).
fn set_str(t: &mut dyn TableLike, key: &str, value: &str) -> bool {
    if t.get(key).and_then(Item::as_str) == Some(value) {
        return false;
    }
    t.insert(key, toml_edit::value(value));
    true
}

/// config.toml with a `migcage` runtime: the runc shim with `options.BinaryName = binary` (and
/// `default_runtime_name`, if asked). Returns the text unchanged when it already says so.
pub fn containerd_edit(old: &str, binary: &Path, set_default: bool) -> Result<String, String> {
    let mut doc: DocumentMut = old
        .parse()
        .map_err(|e: toml_edit::TomlError| e.to_string().replace('\n', " "))?;
    let version = match doc.get("version") {
        Some(v) => v
            .as_integer()
            .ok_or_else(|| format!("version is {v}, expected an integer"))?,
        None if doc.as_table().is_empty() => {
            doc.insert("version", toml_edit::value(2));
            2
        }
        // containerd reads a config without `version` as version 1.
        None => 1,
    };
    let path = cri_path(version)
        .ok_or_else(|| format!("config version {version} is not one migcage knows (1, 2 or 3)"))?;
    let binary = binary.display().to_string();
    let mut changed = old.trim().is_empty();
    let mut at = String::new();
    let mut item = doc.as_item_mut();
    for key in path {
        item = child(item, key, &mut at)?;
    }
    let containerd = item;
    if set_default {
        changed |= set_str(table_like(containerd), "default_runtime_name", RUNTIME_NAME);
    }
    let runtimes = child(containerd, "runtimes", &mut at)?;
    let runtimes_at = at.clone();
    // A new entry starts from runc's settings (SystemdCgroup and friends), values only.
    let mut base: Option<(KeyValues, KeyValues)> = None;
    let rt = table_like(runtimes);
    if rt.get(RUNTIME_NAME).is_none() {
        if let Some(runc) = rt.get("runc").and_then(Item::as_table_like) {
            let values = |t: &dyn TableLike| -> KeyValues {
                t.iter()
                    .filter(|(_, v)| v.is_value())
                    .map(|(k, v)| {
                        let mut v = v.clone();
                        if let Some(v) = v.as_value_mut() {
                            v.decor_mut().clear();
                        }
                        (k.to_string(), v)
                    })
                    .collect()
            };
            let options = runc
                .get("options")
                .and_then(Item::as_table_like)
                .map(values)
                .unwrap_or_default();
            base = Some((values(runc), options));
        }
        let mut t = Table::new();
        if let Some((values, _)) = &base {
            for (k, v) in values {
                t.insert(k, v.clone());
            }
        }
        rt.insert(RUNTIME_NAME, Item::Table(t));
        changed = true;
    }
    let mut at = runtimes_at;
    let entry = child(runtimes, RUNTIME_NAME, &mut at)?;
    if let Some(t) = entry.as_table_mut() {
        t.set_implicit(false);
    }
    changed |= set_str(table_like(entry), "runtime_type", "io.containerd.runc.v2");
    let options = child(entry, "options", &mut at)?;
    if let Some(t) = options.as_table_mut() {
        t.set_implicit(false);
    }
    if let Some((_, opts)) = base {
        for (k, v) in opts {
            if table_like(options).get(&k).is_none() {
                table_like(options).insert(&k, v);
            }
        }
    }
    changed |= set_str(table_like(options), "BinaryName", &binary);
    if !changed {
        return Ok(old.to_string());
    }
    Ok(doc.to_string())
}

// ---------------------------------------------------------------------------------------------
// Podman and CRI-O: the OCI hooks.d file

/// The hooks.d file (hooks schema 1.0.0) running `migcage hook prestart` for every container
/// (migcage reads no driver state for a container that asks for nothing). `config` is migcage's
/// configuration file when not the default one.
pub fn hook_json(migcage: &Path, config: Option<&Path>) -> String {
    let mut hook = json!({
        "path": migcage.display().to_string(),
        "args": ["migcage", "hook", "prestart"],
    });
    if let Some(c) = config {
        hook["env"] = json!([format!("{}={}", crate::config::CONFIG_ENV, c.display())]);
    }
    let doc = json!({
        "version": "1.0.0",
        "hook": hook,
        "when": {"always": true},
        "stages": ["prestart"],
    });
    serde_json::to_string_pretty(&doc).expect("a Value serializes") + "\n"
}

// ---------------------------------------------------------------------------------------------
// Doing it

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// The executable to register, and the `migcage-runtime` link to make for it (if any).
fn binary_for(opts: &Options) -> Result<(PathBuf, Option<PathBuf>), ConfigureError> {
    if let Some(b) = &opts.binary {
        if !b.is_absolute() {
            return Err(ConfigureError::Usage(format!(
                "--binary {}: give an absolute path (the engine runs it from its own directory)",
                b.display()
            )));
        }
        if !b.exists() {
            return Err(ConfigureError::Usage(format!(
                "--binary {} does not exist; install migcage there (for docker and containerd: a link named {RUNTIME_ARGV0} to migcage)",
                b.display()
            )));
        }
        return Ok((b.clone(), None));
    }
    let me = std::env::current_exe().map_err(|e| {
        ConfigureError::Usage(format!(
            "cannot find migcage's own executable ({e}); pass --binary"
        ))
    })?;
    if opts.target.uses_hook() {
        return Ok((me, None));
    }
    let link = me.with_file_name(RUNTIME_ARGV0);
    match std::fs::symlink_metadata(&link) {
        Ok(_) if same_file(&link, &me) => Ok((link, None)),
        Ok(_) => Err(ConfigureError::Usage(format!(
            "{} exists and is not migcage; remove it, or pass --binary with migcage's runtime link",
            link.display()
        ))),
        Err(_) => Ok((link.clone(), Some(link))),
    }
}

fn backup_name(path: &Path, now: SystemTime) -> PathBuf {
    let (y, mo, d, h, mi, s) = civil_utc(now);
    let base = format!(
        "{}.migcage-backup-{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z",
        path.display()
    );
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while candidate.symlink_metadata().is_ok() {
        candidate = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    candidate
}

/// Register migcage with `opts.target`.
pub fn configure(opts: &Options) -> Result<Outcome, ConfigureError> {
    if opts.hooks_dir.is_some() && !opts.target.uses_hook() {
        return Err(ConfigureError::Usage(format!(
            "--hooks-dir is for podman and crio; {} takes --config-file",
            opts.target.name()
        )));
    }
    if opts.set_default && opts.target.uses_hook() {
        return Err(ConfigureError::Usage(format!(
            "--set-default is for docker and containerd; {} runs migcage as a hook for every container",
            opts.target.name()
        )));
    }
    let file = opts
        .config_file
        .clone()
        .unwrap_or_else(|| opts.target.default_file(opts.hooks_dir.as_deref()));
    let (binary, link) = binary_for(opts)?;
    let old = match std::fs::read_to_string(&file) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => return Err(ConfigureError::Read { path: file, source }),
    };
    let old_text = old.clone().unwrap_or_default();
    let new_text = match opts.target {
        Target::Docker => docker_edit(&old_text, &binary, opts.set_default),
        Target::Containerd => containerd_edit(&old_text, &binary, opts.set_default),
        Target::Podman | Target::Crio => {
            let want = hook_json(&binary, opts.migcage_config.as_deref());
            // Already there, perhaps formatted differently: leave it.
            let same = serde_json::from_str::<Value>(&old_text).ok()
                == serde_json::from_str::<Value>(&want).ok();
            Ok(if same { old_text.clone() } else { want })
        }
    }
    .map_err(|message| ConfigureError::Invalid {
        path: file.clone(),
        message,
    })?;
    let changed = old.as_deref() != Some(new_text.as_str());
    let label = file.display().to_string();
    let diff = if changed {
        unified_diff(
            &old_text,
            &new_text,
            if old.is_some() { &label } else { "/dev/null" },
            &label,
        )
    } else {
        String::new()
    };
    let mut out = Outcome {
        target: opts.target,
        file: file.clone(),
        binary: binary.clone(),
        changed,
        diff,
        backup: None,
        link: link.clone(),
        dry_run: opts.dry_run,
    };
    if opts.dry_run {
        return Ok(out);
    }
    if let Some(link) = &link {
        let target = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("migcage"));
        std::os::unix::fs::symlink(&target, link).map_err(|source| ConfigureError::Write {
            path: link.clone(),
            source,
        })?;
    }
    if !changed {
        return Ok(out);
    }
    if old.is_some() {
        let backup = backup_name(&file, SystemTime::now());
        std::fs::copy(&file, &backup).map_err(|source| ConfigureError::Backup {
            path: file.clone(),
            backup: backup.clone(),
            source,
        })?;
        out.backup = Some(backup);
    } else if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| ConfigureError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    write_atomically(&file, new_text.as_bytes()).map_err(|source| ConfigureError::Write {
        path: file.clone(),
        source,
    })?;
    Ok(out)
}

/// What to tell the user: the diff of a dry run, or what changed and what to do next.
pub fn report(o: &Outcome) -> String {
    let mut s = String::new();
    if o.dry_run {
        if let Some(l) = &o.link {
            let _ = writeln!(s, "# would create {} -> migcage", l.display());
        }
        if o.changed {
            s.push_str(&o.diff);
        } else {
            let _ = writeln!(s, "# {}: no change", o.file.display());
        }
        return s;
    }
    if let Some(l) = &o.link {
        let _ = writeln!(s, "created {} -> migcage", l.display());
    }
    if !o.changed {
        let _ = writeln!(
            s,
            "{}: already registers migcage ({}); nothing changed",
            o.file.display(),
            o.binary.display()
        );
        return s;
    }
    let _ = write!(
        s,
        "{}: registered migcage ({})",
        o.file.display(),
        o.binary.display()
    );
    match &o.backup {
        Some(b) => {
            let _ = writeln!(s, "; backup {}", b.display());
        }
        None => s.push_str("; new file\n"),
    }
    let next = match o.target {
        Target::Docker => "next: reload dockerd (systemctl reload docker, or SIGHUP), then: docker run --runtime=migcage -e NVIDIA_VISIBLE_DEVICES=0:1 IMAGE",
        Target::Containerd => "next: restart containerd (systemctl restart containerd); Kubernetes pods select it with a RuntimeClass whose handler is migcage",
        Target::Podman => "next: podman runs the hook for every new container (pass --hooks-dir if you chose a directory podman does not read by default)",
        Target::Crio => "next: restart crio (systemctl restart crio) and check that crio.conf's hooks_dir includes this directory",
    };
    s.push_str(next);
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_time() {
        let t = |secs: u64| civil_utc(UNIX_EPOCH + std::time::Duration::from_secs(secs));
        assert_eq!(t(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(t(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(t(1_795_594_555), (2026, 11, 25, 8, 15, 55));
        assert_eq!(t(4_107_542_399), (2100, 2, 28, 23, 59, 59));
    }

    #[test]
    fn diff_hunks() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\nm\n";
        let new = "a\nB\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\nm\nn\n";
        let d = unified_diff(old, new, "x", "y");
        assert_eq!(
            d,
            "--- x\n+++ y\n@@ -1,5 +1,5 @@\n a\n-b\n+B\n c\n d\n e\n@@ -11,3 +11,4 @@\n k\n l\n m\n+n\n"
        );
        assert_eq!(unified_diff(old, old, "x", "y"), "");
        // From nothing.
        assert_eq!(
            unified_diff("", "a\nb\n", "/dev/null", "f"),
            "--- /dev/null\n+++ f\n@@ -0,0 +1,2 @@\n+a\n+b\n"
        );
        // Close changes share one hunk.
        let d = unified_diff("1\n2\n3\n4\n5\n", "1\nX\n3\n4\nY\n", "a", "b");
        assert_eq!(d.matches("@@ -").count(), 1, "{d}");
    }

    /// Apply a unified diff to `old` (a check that our diffs are real diffs).
    fn patch(old: &str, diff: &str) -> String {
        let a: Vec<&str> = old.lines().collect();
        let mut out: Vec<String> = Vec::new();
        let mut pos = 0usize;
        for line in diff.lines().skip(2) {
            if let Some(h) = line.strip_prefix("@@ -") {
                let start: usize = h.split([',', ' ']).next().unwrap().parse().unwrap();
                let len: usize = h.split([',', ' ']).nth(1).unwrap().parse().unwrap();
                let start = if len == 0 { start } else { start - 1 };
                out.extend(a[pos..start].iter().map(|s| s.to_string()));
                pos = start;
            } else if let Some(l) = line.strip_prefix(' ') {
                assert_eq!(a[pos], l);
                out.push(l.into());
                pos += 1;
            } else if let Some(l) = line.strip_prefix('-') {
                assert_eq!(a[pos], l);
                pos += 1;
            } else if let Some(l) = line.strip_prefix('+') {
                out.push(l.into());
            }
        }
        out.extend(a[pos..].iter().map(|s| s.to_string()));
        out.join("\n") + "\n"
    }

    #[test]
    fn diffs_apply() {
        let cases = [
            ("a\nb\nc\n", "a\nc\n"),
            ("", "x\n"),
            ("x\n", ""),
            (
                "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n",
                "0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n13\n",
            ),
            ("same\nsame\nsame\n", "same\nother\nsame\nsame\n"),
        ];
        for (old, new) in cases {
            let d = unified_diff(old, new, "a", "b");
            let got = patch(old, &d);
            let want = if new.is_empty() { "\n" } else { new };
            assert_eq!(got, want, "{old:?} -> {new:?}:\n{d}");
        }
    }

    const DAEMON_JSON: &str = r#"{
    "data-root": "/data/docker",
    "log-opts": {"max-size": "100m",   "max-file": "3"},
    "runtimes": {
        "nvidia": {
            "path": "nvidia-container-runtime",
            "runtimeArgs": []
        }
    },
    "exec-opts": ["native.cgroupdriver=systemd"]
}
"#;

    #[test]
    fn docker_keeps_every_other_entry_and_its_text() {
        let out = docker_edit(DAEMON_JSON, Path::new("/usr/bin/migcage-runtime"), false).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["runtimes"]["migcage"],
            json!({"path": "/usr/bin/migcage-runtime"})
        );
        assert_eq!(v["runtimes"]["nvidia"]["path"], "nvidia-container-runtime");
        // Untouched entries keep their exact text and order.
        assert!(
            out.contains(r#""log-opts": {"max-size": "100m",   "max-file": "3"},"#),
            "{out}"
        );
        let keys: Vec<_> = ["data-root", "log-opts", "runtimes", "exec-opts"]
            .iter()
            .map(|k| out.find(&format!("\"{k}\"")).unwrap())
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{out}");
        // The file's 4-space indentation is kept for what migcage adds.
        assert!(out.contains("\n        \"migcage\": {\n            \"path\": \"/usr/bin/migcage-runtime\"\n        }\n    },"), "{out}");
        // Idempotent: the same text comes back.
        assert_eq!(
            docker_edit(&out, Path::new("/usr/bin/migcage-runtime"), false).unwrap(),
            out
        );
        // Default runtime.
        let d = docker_edit(&out, Path::new("/usr/bin/migcage-runtime"), true).unwrap();
        let v: Value = serde_json::from_str(&d).unwrap();
        assert_eq!(v["default-runtime"], "migcage");
        assert_eq!(
            docker_edit(&d, Path::new("/usr/bin/migcage-runtime"), true).unwrap(),
            d
        );
    }

    #[test]
    fn docker_from_nothing_and_fixes_an_old_entry() {
        let out = docker_edit("", Path::new("/opt/m/migcage-runtime"), false).unwrap();
        assert_eq!(
            out,
            "{\n  \"runtimes\": {\n    \"migcage\": {\n      \"path\": \"/opt/m/migcage-runtime\"\n    }\n  }\n}\n"
        );
        let old =
            r#"{"runtimes":{"migcage":{"path":"/usr/bin/migcage","runtimeArgs":["runtime"]}}}"#;
        let out = docker_edit(old, Path::new("/usr/bin/migcage-runtime"), false).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["runtimes"]["migcage"],
            json!({"path": "/usr/bin/migcage-runtime"})
        );
        for bad in ["[1]", "{\"runtimes\": []}", "{"] {
            assert!(docker_edit(bad, Path::new("/x"), false).is_err(), "{bad}");
        }
    }

    #[test]
    fn containerd_versions() {
        let bin = Path::new("/usr/bin/migcage-runtime");
        let v2 = "version = 2\n# keep me\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n  [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n    SystemdCgroup = true\n";
        let out = containerd_edit(v2, bin, false).unwrap();
        assert!(out.starts_with(v2), "{out}");
        let doc: toml::Table = out.parse().unwrap();
        let m = &doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["migcage"];
        assert_eq!(m["runtime_type"].as_str(), Some("io.containerd.runc.v2"));
        assert_eq!(
            m["options"]["BinaryName"].as_str(),
            Some("/usr/bin/migcage-runtime")
        );
        // runc's settings carry over.
        assert_eq!(m["options"]["SystemdCgroup"].as_bool(), Some(true));
        assert_eq!(containerd_edit(&out, bin, false).unwrap(), out);

        let v3 = "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd]\n  default_runtime_name = 'runc'\n";
        let out = containerd_edit(v3, bin, true).unwrap();
        let doc: toml::Table = out.parse().unwrap();
        let c = &doc["plugins"]["io.containerd.cri.v1.runtime"]["containerd"];
        assert_eq!(c["default_runtime_name"].as_str(), Some("migcage"));
        assert_eq!(
            c["runtimes"]["migcage"]["options"]["BinaryName"].as_str(),
            Some("/usr/bin/migcage-runtime")
        );
        assert_eq!(containerd_edit(&out, bin, true).unwrap(), out);

        // An empty file becomes a version 2 config.
        let out = containerd_edit("", bin, false).unwrap();
        let doc: toml::Table = out.parse().unwrap();
        assert_eq!(doc["version"].as_integer(), Some(2));
        assert!(
            doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["migcage"]
                .is_table()
        );
        // No version key: version 1.
        let out = containerd_edit("root = \"/var/lib/containerd\"\n", bin, false).unwrap();
        let doc: toml::Table = out.parse().unwrap();
        assert_eq!(
            doc["plugins"]["cri"]["containerd"]["runtimes"]["migcage"]["options"]["BinaryName"]
                .as_str(),
            Some("/usr/bin/migcage-runtime")
        );
    }

    #[test]
    fn containerd_errors_name_the_key() {
        let bin = Path::new("/b");
        let e = containerd_edit("version = 9\n", bin, false).unwrap_err();
        assert!(e.contains("version 9"), "{e}");
        let e = containerd_edit("version = 2\nplugins = 3\n", bin, false).unwrap_err();
        assert!(e.contains("plugins"), "{e}");
        let e = containerd_edit(
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\nruntimes = \"x\"\n",
            bin,
            false,
        )
        .unwrap_err();
        assert!(
            e.contains("runtimes") && e.contains("expected a table"),
            "{e}"
        );
        assert!(containerd_edit("[[[", bin, false).is_err());
        // Inline tables are tables too.
        let out = containerd_edit(
            "version = 2\nplugins = {\"io.containerd.grpc.v1.cri\" = {containerd = {runtimes = {}}}}\n",
            bin,
            false,
        )
        .unwrap();
        let doc: toml::Table = out.parse().unwrap();
        assert_eq!(
            doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["migcage"]
                ["options"]["BinaryName"]
                .as_str(),
            Some("/b")
        );
    }

    #[test]
    fn the_shipped_hook_file_is_what_configure_writes() {
        let shipped = include_str!("../../../hooks/oci-migcage-hook.json");
        assert_eq!(hook_json(Path::new("/usr/bin/migcage"), None), shipped);
        let v: Value = serde_json::from_str(shipped).unwrap();
        assert_eq!(v["version"], "1.0.0");
        assert_eq!(v["stages"], json!(["prestart"]));
        assert_eq!(v["hook"]["args"], json!(["migcage", "hook", "prestart"]));
        let with = hook_json(Path::new("/opt/migcage"), Some(Path::new("/etc/sim.toml")));
        let v: Value = serde_json::from_str(&with).unwrap();
        assert_eq!(v["hook"]["env"], json!(["MIGCAGE_CONFIG=/etc/sim.toml"]));
    }
}
