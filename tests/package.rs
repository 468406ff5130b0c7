//! What the packages ship, checked without building them (scripts/package-test.sh builds,
//! installs and purges them): the default config is exactly the built-in defaults and documents
//! every key; docs/configuration.md shows that same file; the man pages and shell
//! completions come out of the binary; the hooks.d file and the systemd unit name things that
//! exist; every packaged source file is in the repository.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use migcage::config::Config;

const MIGCAGE: &str = env!("CARGO_BIN_EXE_migcage");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `section.key` of every key the configuration has (from the defaults, serialized).
fn config_keys() -> BTreeSet<String> {
    let v = toml::Value::try_from(Config::default()).unwrap();
    let mut out = BTreeSet::new();
    for (k, val) in v.as_table().unwrap() {
        match val {
            toml::Value::Table(t) => out.extend(t.keys().map(|sub| format!("{k}.{sub}"))),
            _ => {
                out.insert(k.clone());
            }
        }
    }
    out
}

/// The file with every `# key = value` line uncommented, and the `section.key`s it uncommented.
fn uncommented(text: &str) -> (String, BTreeSet<String>) {
    let mut section = String::new();
    let mut keys = BTreeSet::new();
    let mut out = String::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
        }
        let key_line = line.strip_prefix("# ").filter(|rest| {
            rest.split_once(" = ").is_some_and(|(k, _)| {
                !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            })
        });
        match key_line {
            Some(rest) => {
                let key = rest.split_once(" = ").unwrap().0;
                let full = if section.is_empty() {
                    key.to_string()
                } else {
                    format!("{section}.{key}")
                };
                assert!(keys.insert(full.clone()), "{full} is set twice");
                out.push_str(rest);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    (out, keys)
}

#[test]
fn shipped_config_is_the_defaults_and_documents_every_key() {
    let path = Path::new(ROOT).join("packaging/config.toml");
    let text = read("packaging/config.toml");
    assert_eq!(
        Config::parse(&text, &path).unwrap(),
        Config::default(),
        "the shipped file must set nothing: every key stays commented out"
    );
    let (all, keys) = uncommented(&text);
    assert_eq!(
        keys,
        config_keys(),
        "packaging/config.toml must show every key of Config, and no other"
    );
    assert_eq!(
        Config::parse(&all, &path).unwrap(),
        Config::default(),
        "a commented-out value differs from the built-in default"
    );
    // Each key line comes after at least one line of prose about it.
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("# ") && line.contains(" = ") && i > 0 {
            let prose = lines[..i]
                .iter()
                .rev()
                .take_while(|l| l.starts_with('#') && !l.contains(" = "))
                .count();
            assert!(prose > 0, "{line} has no description above it");
        }
    }
}

#[test]
fn configuration_reference_is_the_shipped_file() {
    let reference = read("docs/configuration.md");
    let shipped = read("packaging/config.toml");
    let block = format!("```toml\n{shipped}```");
    assert!(
        reference.contains(&block),
        "docs/configuration.md must show packaging/config.toml verbatim, in a ```toml block"
    );
}

#[test]
fn hooks_d_file_and_systemd_unit_name_what_exists() {
    let (path, stages) =
        migcage::admin::doctor::parse_hook_file(&read("hooks/oci-migcage-hook.json")).unwrap();
    assert_eq!(
        path,
        Path::new("/usr/bin/migcage"),
        "the package installs migcage there"
    );
    assert!(!stages.is_empty());

    let unit = read("packaging/migcage-cdi.service");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/bin/migcage"));
    let args: Vec<&str> = words.collect();
    // The command line parses (clap refuses an unknown subcommand or flag before --help).
    let out = Command::new(MIGCAGE)
        .args(&args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`migcage {}`: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(unit.contains("Type=oneshot") && unit.contains("WantedBy=multi-user.target"));

    // The path unit starts that service, and watches absolute paths (or %v, the kernel release).
    let path = read("packaging/migcage-cdi.path");
    assert!(
        path.lines().any(|l| l == "Unit=migcage-cdi.service"),
        "{path}"
    );
    let watched: Vec<&str> = path
        .lines()
        .filter_map(|l| l.strip_prefix("PathChanged="))
        .collect();
    assert!(
        watched.iter().any(|w| w.contains("libnvidia-ml.so.1"))
            && watched.iter().any(|w| w.starts_with("/lib/modules/%v/")),
        "{watched:?}"
    );
    for w in &watched {
        assert!(w.starts_with('/') && !w.contains(' '), "PathChanged={w}");
    }
    assert!(path.contains("WantedBy=multi-user.target"));
}

#[test]
fn every_packaged_source_file_exists() {
    let manifest: toml::Table = read("Cargo.toml").parse().unwrap();
    let meta = &manifest["package"]["metadata"];
    let mut sources = Vec::new();
    for a in meta["deb"]["assets"].as_array().unwrap() {
        if let Some(arr) = a.as_array() {
            sources.push(arr[0].as_str().unwrap().to_string());
        } else if let Some(src) = a.get("source") {
            sources.push(src.as_str().unwrap().to_string());
        }
    }
    for a in meta["generate-rpm"]["assets"].as_array().unwrap() {
        sources.push(a["source"].as_str().unwrap().to_string());
    }
    for key in [
        "post_install_script",
        "pre_uninstall_script",
        "post_uninstall_script",
    ] {
        sources.push(meta["generate-rpm"][key].as_str().unwrap().to_string());
    }
    sources.push(format!(
        "{}/postrm",
        meta["deb"]["maintainer-scripts"].as_str().unwrap()
    ));
    sources.push("packaging/migcage-cdi.service".into());
    sources.push("packaging/migcage-cdi.path".into());
    for s in sources.iter().filter(|s| !s.starts_with("target/")) {
        // `dir/*.md`: a glob of one directory, which must match at least one file.
        if let Some((dir, suffix)) = s.split_once("/*") {
            let matched = std::fs::read_dir(Path::new(ROOT).join(dir))
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(suffix)
                })
                .count();
            assert!(matched > 0, "{s} is packaged but matches no file");
            continue;
        }
        assert!(
            Path::new(ROOT).join(s).is_file(),
            "{s} is packaged but missing"
        );
    }
    let postrm = read("packaging/debian/postrm");
    assert_eq!(
        postrm.matches("#DEBHELPER#").count(),
        1,
        "cargo-deb replaces every #DEBHELPER# token, also one in a comment"
    );
}

#[test]
fn udev_rule_runs_a_command_that_exists() {
    let rules = read("packaging/71-migcage-dev-char.rules");
    let runs: Vec<&str> = rules
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split("RUN+=\"").nth(1)?.split('"').next())
        .collect();
    assert!(!runs.is_empty(), "the rule runs migcage");
    for run in runs {
        let mut words = run.split_whitespace();
        assert_eq!(words.next(), Some("/usr/bin/migcage"));
        let args: Vec<&str> = words.collect();
        let out = Command::new(MIGCAGE)
            .args(&args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "`migcage {}`: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
