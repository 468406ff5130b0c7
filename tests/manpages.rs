//! What `migcage generate` writes for the packages, from the CLI itself: a man page for every
//! command and subcommand, `cdi generate` and `cdi list` included, each with EXIT STATUS, FILES,
//! ENVIRONMENT and EXAMPLES, and migcage's version in its footer, not the subcommand's name; the
//! shell completions; and `--help` lines that fit a terminal.

mod common;

use std::process::Command;

use common::MIGCAGE;

#[test]
fn every_command_has_a_page_with_the_sections_and_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(MIGCAGE)
        .args(["generate", "man"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let help = Command::new(MIGCAGE).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let mut pages = vec!["migcage".to_string()];
    // Every command `migcage --help` lists, and the subcommands of cdi, config and system.
    let commands = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help");
    pages.extend(commands.map(|c| format!("migcage-{c}")));
    pages.extend(
        [
            "migcage-cdi-generate",
            "migcage-cdi-list",
            "migcage-config-get",
            "migcage-config-set",
            "migcage-config-default",
            "migcage-system-create-dev-char-links",
        ]
        .map(String::from),
    );
    assert!(pages.len() > 12, "{pages:?}");
    let version = format!("migcage {}", env!("CARGO_PKG_VERSION"));
    for page in &pages {
        let path = dir.path().join(format!("{page}.1"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{page}.1: {e}"));
        let th = text.lines().find(|l| l.starts_with(".TH ")).unwrap();
        assert!(th.contains(&version), "{page}: footer {th}");
        for s in [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "OPTIONS",
            "\"EXIT STATUS\"",
            "FILES",
            "ENVIRONMENT",
            "EXAMPLES",
        ] {
            assert!(text.contains(&format!(".SH {s}")), "{page}: no {s} section");
        }
        assert!(
            !text.contains(".SH SUBCOMMANDS\n.SH"),
            "{page}: an empty SUBCOMMANDS"
        );
    }
    let written: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !written.contains(&"migcage-generate.1".into())
            && !written.contains(&"migcage-help.1".into()),
        "the hidden generate command and clap's help get no page: {written:?}"
    );
    let doctor = std::fs::read_to_string(dir.path().join("migcage-doctor.1")).unwrap();
    assert!(doctor.contains("json"), "{doctor}");
}

#[test]
fn completions_come_from_the_cli() {
    for (shell, marker) in [
        ("bash", "complete -F _migcage"),
        ("zsh", "#compdef migcage"),
        ("fish", "complete -c migcage"),
    ] {
        let out = Command::new(MIGCAGE)
            .args(["generate", "completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(marker), "{shell}: no {marker:?}");
        assert!(text.contains("doctor"), "{shell}: no doctor subcommand");
    }
}

#[test]
fn help_lines_are_short() {
    let help = Command::new(MIGCAGE).arg("--help").output().unwrap();
    for line in String::from_utf8_lossy(&help.stdout).lines() {
        assert!(
            line.chars().count() <= 100,
            "too long for a terminal: {line}"
        );
    }
}
