//! The log queries of docs/usage.md, run with `jq` against the records real starts wrote: a container
//! that ran, one whose hook refused it (runc ran the hook), and one the runtime wrapper stopped.
//! Every failure record has the same fields (container, bundle, outcome, error, stage, request),
//! and its sample record has exactly the fields of a real one.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Bundle, Mode, SimHost, MIGCAGE};
use migcage::config::Config;
use serde_json::Value;

const LOG: &str = "/var/log/migcage.log";

fn log_path(host: &SimHost) -> PathBuf {
    let path = host.config();
    let c = Config::parse(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
    PathBuf::from(c.log.file)
}

/// docs/usage.md's section on the log: its `jq` command lines and its sample record.
fn readme_log_section() -> (Vec<String>, Value) {
    let usage =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/usage.md"))
            .unwrap();
    let start = usage
        .find("\n## The log\n")
        .expect("docs/usage.md has a '## The log' section");
    let section = &usage[start + 4..];
    let section = &section[..section.find("\n#").unwrap_or(section.len())];
    let queries: Vec<String> = section
        .lines()
        .map(|l| l.trim().trim_matches('`'))
        .filter(|l| l.starts_with("jq ") && l.contains(LOG))
        .map(|l| l.split(" # ").next().unwrap().trim().to_string())
        .collect();
    let sample = section
        .lines()
        .find(|l| l.starts_with('{'))
        .expect("a sample record");
    (queries, serde_json::from_str(sample).unwrap())
}

fn jq(query: &str, log: &Path, id: &str) -> String {
    let line = query
        .replace(LOG, &log.display().to_string())
        .replace("ID", id);
    let out = Command::new("sh").arg("-c").arg(&line).output().unwrap();
    assert!(
        out.status.success(),
        "{line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[test]
fn the_readmes_queries_find_the_failures_of_hook_and_runtime_starts() {
    let test = "the_readmes_queries_find_the_failures_of_hook_and_runtime_starts";
    if !common::need_programs(test, &[("runc", "runc"), ("jq", "jq")]) {
        return;
    }
    if let Some(why) = Mode::RuncV1.unavailable() {
        common::skip(&format!("{test}: {why}"));
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let ok = common::run(
        Mode::RuncV1,
        &Bundle::new(&host, &["NVIDIA_VISIBLE_DEVICES=0:1"], "true"),
        &host,
    );
    assert!(ok.ok(), "{}", ok.stderr());
    // 0:9 does not exist on an A100 split in seven: the hook refuses the container.
    let refused = common::run(
        Mode::RuncV1,
        &Bundle::new(&host, &["NVIDIA_VISIBLE_DEVICES=0:9"], "true"),
        &host,
    );
    assert!(!refused.ok(), "0:9 was given");
    // The runtime wrapper stops the same ask before runc runs.
    let stopped = common::unique("rt");
    let b = Bundle::new(&host, &["NVIDIA_VISIBLE_DEVICES=0:9"], "true");
    let out = Command::new(MIGCAGE)
        .arg("--config")
        .arg(host.config())
        .args(["runtime", "create", "--bundle"])
        .arg(b.path())
        .arg(&stopped)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the wrapper ran 0:9");

    let log = log_path(&host);
    let records: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let record = |id: &str| {
        records
            .iter()
            .find(|r| r["message"] == "container" && r["container"] == id)
            .unwrap_or_else(|| panic!("no record of {id}: {records:?}"))
            .clone()
    };
    let failures = [
        (record(&refused.id), "prestart", refused.id.as_str()),
        (record(&stopped), "runtime", stopped.as_str()),
    ];
    for (r, stage, id) in &failures {
        assert_eq!(r["stage"], *stage, "{r}");
        assert_eq!(r["outcome"], "error", "{r}");
        assert_eq!(r["level"], "ERROR", "{r}");
        assert_eq!(r["container"], *id, "{r}");
        assert_eq!(r["request"], "0:9", "{r}");
        assert!(r["bundle"].as_str().is_some_and(|b| !b.is_empty()), "{r}");
        assert!(
            r["error"].as_str().is_some_and(|e| e.contains("0:9")),
            "{r}"
        );
    }
    assert_eq!(keys(&failures[0].0), keys(&failures[1].0));

    let (queries, sample) = readme_log_section();
    assert!(queries.len() >= 3, "{queries:?}");
    for q in &queries {
        let found = jq(q, &log, &refused.id);
        if q.contains("\"error\"") {
            for (_, _, id) in &failures {
                assert!(found.contains(*id), "{q} misses {id}: {found}");
            }
            assert!(!found.contains(&ok.id), "{q} finds {}: {found}", ok.id);
        } else {
            assert!(found.contains(&refused.id), "{q}: {found}");
        }
    }
    // The sample is a real record's shape, with a cgroup line a person reads.
    let real = record(&ok.id);
    assert_eq!(keys(&sample), keys(&real), "sample {sample}\nreal {real}");
    let cgroup = real["cgroup"].as_str().unwrap();
    assert!(
        cgroup.starts_with("v1 /") && !cgroup.contains('"'),
        "{cgroup}"
    );
}
