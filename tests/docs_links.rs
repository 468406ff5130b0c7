//! The documentation holds together: every relative link in README.md and docs/*.md names a
//! file that exists and, with `#anchor`, a heading of that file (GitHub's anchor rule); every
//! page under docs/ is reachable from the README; and the README stays a five-minute read.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The pages checked: README.md and every docs/*.md.
fn pages() -> Vec<PathBuf> {
    let mut out = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    out.extend(docs);
    out
}

/// The text outside fenced code blocks, with inline code spans removed.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut inside = false;
        for c in line.chars() {
            if c == '`' {
                inside = !inside;
            } else if !inside {
                out.push(c);
            }
        }
        out.push('\n');
    }
    out
}

/// The targets of the inline links `[text](target)` of `text`.
fn links(text: &str) -> Vec<String> {
    let p = prose(text);
    let mut out = Vec::new();
    let mut rest = p.as_str();
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        let Some(end) = after.find(')') else { break };
        out.push(after[..end].to_string());
        rest = &after[end..];
    }
    out
}

/// GitHub's anchor of a heading: lower case, punctuation other than `-` and `_` dropped,
/// spaces to `-` (inline code keeps its text).
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of every heading of `text` (outside code blocks).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut fenced = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.insert(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

#[test]
fn the_anchor_rule_is_githubs() {
    assert_eq!(
        anchor(" Driver files (`NVIDIA_DRIVER_CAPABILITIES`)"),
        "driver-files-nvidia_driver_capabilities"
    );
    assert_eq!(
        anchor(" Instances made when a container asks: `[allocation] create_on_demand`"),
        "instances-made-when-a-container-asks-allocation-create_on_demand"
    );
    assert_eq!(
        links("see [a](b.md#c) and `[x](y)`\n```\n[p](q)\n```\n"),
        ["b.md#c"]
    );
}

#[test]
fn every_relative_link_names_a_file_and_heading_that_exist() {
    let (mut broken, mut checked) = (Vec::new(), 0);
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let dir = page.parent().unwrap();
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, frag) = match target.split_once('#') {
                Some((p, f)) => (p, Some(f)),
                None => (target.as_str(), None),
            };
            let file = if path.is_empty() {
                page.clone()
            } else {
                dir.join(path)
            };
            let name = page.strip_prefix(root()).unwrap().display().to_string();
            if !file.exists() {
                broken.push(format!("{name}: ({target}): no file {}", file.display()));
                continue;
            }
            if let Some(frag) = frag {
                let there = std::fs::read_to_string(&file).unwrap_or_default();
                if !anchors(&there).contains(frag) {
                    broken.push(format!("{name}: ({target}): no heading #{frag} there"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(
        checked > 30,
        "only {checked} relative links found: the link scanner is broken"
    );
}

#[test]
fn every_page_under_docs_is_linked_from_the_readme() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let linked: BTreeSet<String> = links(&readme)
        .into_iter()
        .map(|t| t.split('#').next().unwrap().to_string())
        .collect();
    for page in pages().into_iter().skip(1) {
        let rel = Path::new("docs").join(page.file_name().unwrap());
        let rel = rel.display().to_string();
        assert!(linked.contains(&rel), "README.md does not link {rel}");
    }
}

/// "A README a newcomer reads in five minutes": about 250 words a minute.
#[test]
fn the_readme_is_a_five_minute_read() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let words = readme.split_whitespace().count();
    assert!(
        words <= 1300,
        "README.md has {words} words, more than five minutes of reading: move detail to docs/"
    );
}
