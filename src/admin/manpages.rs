//! `migcage generate man`: one page per command and subcommand (migcage.1, migcage-list.1,
//! migcage-cdi-generate.1, ...) from the clap definition the binary parses with, so they cannot
//! drift from it, each with the sections clap does not write: EXIT STATUS, FILES, ENVIRONMENT
//! and EXAMPLES, and `migcage VERSION` in its footer.

use std::io::Write as _;

/// Every page: (name, command), the top-level command first, then each visible subcommand and
/// its own subcommands (not clap's `help`: `migcage help X` is `man migcage-X` already).
pub fn pages(cmd: &clap::Command) -> Vec<(String, clap::Command)> {
    let mut out = vec![(cmd.get_name().to_string(), cmd.clone())];
    collect(cmd, cmd.get_name(), &mut out);
    out
}

fn collect(cmd: &clap::Command, prefix: &str, out: &mut Vec<(String, clap::Command)>) {
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("{prefix}-{}", sub.get_name());
        out.push((name.clone(), sub.clone()));
        collect(sub, &name, out);
    }
}

/// The page `name` of `cmd`, in roff.
pub fn render(name: &str, cmd: clap::Command, version: &str) -> std::io::Result<Vec<u8>> {
    let has_subcommands = cmd.get_subcommands().any(|s| !s.is_hide_set());
    let man = clap_mangen::Man::new(cmd)
        .title(name)
        .source(format!("migcage {version}"))
        .manual("migcage manual");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    if has_subcommands {
        man.render_subcommands_section(&mut out)?;
    }
    section(&mut out, "EXIT STATUS", EXIT_STATUS)?;
    section(&mut out, "FILES", FILES)?;
    section(&mut out, "ENVIRONMENT", ENVIRONMENT)?;
    section(&mut out, "EXAMPLES", examples(name))?;
    section(
        &mut out,
        "SEE ALSO",
        &[
            ("migcage(1)", "every command"),
            ("docs/json.md", "the --json output"),
        ],
    )?;
    writeln!(out, ".SH VERSION\nmigcage {}", escape(version))?;
    Ok(out)
}

const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "Done."),
    (
        "1",
        "The command failed; the one line on stderr, after 'migcage: ', says why and what to do.",
    ),
    ("2", "The command line does not parse."),
    (
        "141",
        "Its output pipe was closed early (killed by SIGPIPE, as cat is): not an error.",
    ),
];

const FILES: &[(&str, &str)] = &[
    (
        "/etc/migcage/config.toml",
        "The configuration; every key documented in the file the packages install.",
    ),
    (
        "/var/log/migcage.log",
        "The log: one JSON record per container start (key log.file).",
    ),
    (
        "/run/migcage",
        "The inventory snapshot and the MIG instance leases (key state_dir).",
    ),
    (
        "/etc/cdi, /var/run/cdi",
        "CDI spec directories (cdi list reads both; the shipped unit writes /var/run/cdi).",
    ),
];

const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "MIGCAGE_CONFIG",
        "The configuration file, when --config is not given; empty means unset.",
    ),
    (
        "MIGCAGE_SIM_ARTIFACTS",
        "simulate: the directory of the simulated NVML and nvidia-smi; empty means unset.",
    ),
];

/// The examples of page `name`.
fn examples(name: &str) -> &'static [(&'static str, &'static str)] {
    match name {
        "migcage" => &[
            ("migcage doctor", "What this host still needs."),
            ("migcage list", "Every GPU and MIG device, the names to ask for and the nodes each gets."),
            ("docker run --gpus device=0:1 IMAGE", "A container given MIG device 0:1 (once configured)."),
        ],
        "migcage-config" | "migcage-config-get" | "migcage-config-set" | "migcage-config-default" => &[
            ("migcage config", "The configuration in effect, as TOML."),
            ("migcage config get log.level", "One key's value."),
            ("migcage config set log.level debug --dry-run", "The change, as a diff, without making it."),
            ("migcage config default", "The built-in configuration."),
        ],
        "migcage-simulate" => &[(
            "migcage simulate --topology a100-7x1g --root /tmp/sim",
            "A simulated A100 in seven instances; then MIGCAGE_CONFIG=/tmp/sim/config.toml migcage list.",
        )],
        "migcage-list" => &[
            ("migcage list", "The table."),
            ("migcage list --json | jq -r '.gpus[].mig_devices[].uuid'", "Every MIG device's UUID."),
        ],
        "migcage-refresh" => &[("migcage refresh", "Rewrite the inventory snapshot after changing MIG instances.")],
        "migcage-hook" => &[(
            "migcage hook prestart < state.json",
            "What runc runs; hooks.d and docker run --gpus register it.",
        )],
        "migcage-doctor" => &[
            ("migcage doctor", "One line per finding: OK, WARN or FAIL with the fix."),
            ("migcage doctor --json | jq '.checks[] | select(.status != \"OK\")'", "What is not OK."),
        ],
        "migcage-runtime" => &[(
            "migcage runtime --bundle DIR create ID",
            "What containerd or Docker run in place of runc.",
        )],
        "migcage-configure" => &[
            ("migcage configure docker --dry-run", "The change to daemon.json, as a diff."),
            ("migcage configure podman", "The hooks.d file for Podman."),
        ],
        "migcage-cdi" | "migcage-cdi-generate" => &[
            ("migcage cdi generate", "The spec on stdout."),
            ("migcage cdi generate --output /etc/cdi/", "Write /etc/cdi/nvidia.com-gpu.yaml, where Podman, CRI-O and containerd read it."),
        ],
        "migcage-cdi-list" => &[
            ("migcage cdi list", "What the specs in /etc/cdi and /var/run/cdi offer."),
            ("migcage cdi list --check", "Exit 1 when a spec no longer matches the hardware."),
        ],
        "migcage-mig" | "migcage-mig-apply" | "migcage-mig-assert" | "migcage-mig-capacity" | "migcage-mig-export" => &[
            ("migcage mig apply -f config.yaml -c all-1g.5gb --dry-run", "The plan: what it would destroy and create."),
            ("migcage mig assert -f config.yaml -c all-1g.5gb", "Exit 0 when the GPUs have that layout already."),
            ("migcage mig export", "Today's layout as a mig-parted file."),
        ],
        "migcage-release" => &[("migcage release CONTAINER", "Free the instances a vanished container still holds.")],
        "migcage-system" | "migcage-system-create-dev-char-links" => &[(
            "migcage system create-dev-char-links --dry-run",
            "The /dev/char links it would make.",
        )],
        "migcage-explain" => &[
            ("migcage explain --bundle DIR", "What migcage would do to the container of bundle DIR."),
            ("migcage explain --spec config.json --json", "The same, for a spec file, as JSON."),
        ],
        _ => &[("migcage --help", "Every command.")],
    }
}

/// Text for roff: a backslash written as `\e`, a hyphen as `\-`, a line never starting a request.
fn escape(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with(['.', '\'']) {
        format!("\\&{t}")
    } else {
        t
    }
}

fn section(out: &mut Vec<u8>, title: &str, items: &[(&str, &str)]) -> std::io::Result<()> {
    if title.contains(' ') {
        writeln!(out, ".SH \"{title}\"")?;
    } else {
        writeln!(out, ".SH {title}")?;
    }
    for (term, text) in items {
        writeln!(out, ".TP\n\\fB{}\\fR\n{}", escape(term), escape(text))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_roff_would_read_as_requests() {
        assert_eq!(escape("a-b \\x"), "a\\-b \\ex");
        assert_eq!(escape(".hidden"), "\\&.hidden");
    }

    #[test]
    fn every_page_has_the_sections_and_the_version() {
        let cmd = clap::Command::new("migcage")
            .subcommand(clap::Command::new("cdi").subcommand(clap::Command::new("list")))
            .subcommand(clap::Command::new("hidden").hide(true));
        let names: Vec<String> = pages(&cmd).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["migcage", "migcage-cdi", "migcage-cdi-list"]);
        let page = render("migcage-cdi-list", pages(&cmd).remove(2).1, "9.9").unwrap();
        let text = String::from_utf8(page).unwrap();
        for s in ["EXIT STATUS", "FILES", "ENVIRONMENT", "EXAMPLES"] {
            assert!(
                text.contains(&format!(".SH {s}")) || text.contains(&format!(".SH \"{s}\"")),
                "{s}: {text}"
            );
        }
        assert!(text.contains("migcage 9.9"), "{text}");
        assert!(text.contains("cdi list \\-\\-check"), "{text}");
    }
}
