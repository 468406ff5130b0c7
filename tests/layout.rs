//! The source tree keeps the shape docs/design.md describes ("The layout"): these tests read
//! src/ as text and fail when
//!
//! - code under `src/core/` (outside its `#[cfg(test)]` modules) touches the host: `std::fs`,
//!   `libc`, `nix`, `std::process`, `std::os::unix::fs`, `File::`;
//! - an `unsafe` block or fn appears outside `src/sys/`;
//! - a folder imports one it must not (`core` imports only `core` and `config`; `sys` never
//!   imports `host`, `backend` or `admin`; `host` never `backend` or `admin`; nothing outside
//!   `admin` imports `admin`), which also keeps the tree free of import cycles between folders;
//! - a source file (src/ or crates/) is over 600 lines or a function over 100, unless
//!   docs/design.md names it in
//!   its list of files and functions that are better whole (with the reason).

use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources() -> Vec<(String, String)> {
    files_under(&["src"])
}

/// Every `.rs` file under the given folders of the repository, as (path, text).
fn files_under(dirs: &[&str]) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for d in dirs {
        rust_files(&Path::new(ROOT).join(d), &mut files);
    }
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(ROOT).unwrap().display().to_string();
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// The text of a file without its test code: everything from the first `#[cfg(test)]` on is
/// the unit-test module by this tree's convention (tests last in a file, or in `tests.rs`).
fn production(rel: &str, text: &str) -> String {
    if rel.ends_with("/tests.rs") || rel.contains("/tests/") {
        return String::new();
    }
    let code = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    // Comments and doc comments may name anything.
    code.lines()
        .filter(|l| {
            let t = l.trim_start();
            !(t.starts_with("//") || t.starts_with("/*") || t.starts_with('*'))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The part of docs/design.md that lists what may break the size rule.
fn exceptions() -> String {
    let design = std::fs::read_to_string(Path::new(ROOT).join("docs/design.md")).unwrap();
    let Some(i) = design.find("### Better whole") else {
        return String::new();
    };
    let section = &design[i + 3..];
    // Up to the next heading.
    let end = section.find("\n#").unwrap_or(section.len());
    section[..end].to_string()
}

#[test]
fn core_is_pure() {
    let banned = [
        "std::fs",
        "libc::",
        "nix::",
        "std::process",
        "std::os::unix::fs",
        "File::",
        "std::net",
        "std::env::var",
    ];
    let mut found = Vec::new();
    for (rel, text) in sources() {
        if !rel.starts_with("src/core/") {
            continue;
        }
        for line in production(&rel, &text).lines() {
            for b in banned {
                if line.contains(b) {
                    found.push(format!("{rel}: `{b}` in: {}", line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "src/core/ must not touch the host:\n{}",
        found.join("\n")
    );
}

#[test]
fn unsafe_lives_in_sys() {
    let mut found = Vec::new();
    for (rel, text) in sources() {
        if rel.starts_with("src/sys/") {
            continue;
        }
        for line in production(&rel, &text).lines() {
            let t = line.trim_start();
            if t.contains("unsafe {") || t.contains("unsafe fn") || t.starts_with("unsafe impl") {
                found.push(format!("{rel}: {}", line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "unsafe outside src/sys/:\n{}",
        found.join("\n")
    );
}

/// The folder of `src/<folder>/...` or the file stem of `src/<file>.rs`.
fn top(rel: &str) -> &str {
    let rest = rel.strip_prefix("src/").unwrap();
    match rest.split_once('/') {
        Some((dir, _)) => dir,
        None => rest.strip_suffix(".rs").unwrap(),
    }
}

fn may_import(from: &str, to: &str) -> bool {
    match from {
        "core" => matches!(to, "core" | "config"),
        "sys" => !matches!(to, "host" | "backend" | "admin"),
        "host" => !matches!(to, "backend" | "admin"),
        "admin" | "main" | "lib" => true,
        _ => to != "admin",
    }
}

#[test]
fn folders_import_only_downwards() {
    let mut found = Vec::new();
    for (rel, text) in sources() {
        let from = top(&rel);
        for line in production(&rel, &text).lines() {
            for (i, _) in line.match_indices("crate::") {
                let after = &line[i + "crate::".len()..];
                let to: String = after
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !to.is_empty() && !may_import(from, &to) {
                    found.push(format!("{rel} ({from} -> {to}): {}", line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "imports against the layout:\n{}",
        found.join("\n")
    );
}

#[test]
fn files_are_small_unless_the_design_says_why() {
    let allowed = exceptions();
    let mut found = Vec::new();
    for (rel, text) in files_under(&["src", "crates"]) {
        let lines = text.lines().count();
        if lines > 600 && !allowed.contains(&format!("`{rel}`")) {
            found.push(format!("{rel}: {lines} lines"));
        }
    }
    assert!(found.is_empty(), "files over 600 lines (split them by job, or list them under \"Better whole\" in docs/design.md):\n{}", found.join("\n"));
}

/// Functions by brace depth: a line that starts an `fn` item, then lines until its braces close.
fn long_functions(rel: &str, text: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    // Unit tests (from the first `#[cfg(test)]` on, or a whole tests.rs) may be long tables.
    let tests_from = if rel.ends_with("/tests.rs") {
        0
    } else {
        lines
            .iter()
            .position(|l| l.contains("#[cfg(test)]"))
            .unwrap_or(lines.len())
    };
    let mut i = 0;
    while i < tests_from {
        let t = lines[i].trim_start();
        let is_fn = [
            "fn ",
            "pub fn ",
            "pub(crate) fn ",
            "pub(super) fn ",
            "const fn ",
            "pub const fn ",
            "async fn ",
            "pub async fn ",
        ]
        .iter()
        .any(|p| t.starts_with(p));
        if !is_fn || t.ends_with(';') {
            i += 1;
            continue;
        }
        let name: String = t
            .split("fn ")
            .nth(1)
            .unwrap_or("")
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let (mut depth, mut opened, start) = (0i64, false, i);
        while i < lines.len() {
            for c in lines[i].chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            i += 1;
            if opened && depth <= 0 {
                break;
            }
        }
        let len = i - start;
        if len > 100 {
            out.push((format!("{rel}::{name}"), len));
        }
    }
    out
}

#[test]
fn functions_are_short_unless_the_design_says_why() {
    let allowed = exceptions();
    let mut found = Vec::new();
    for (rel, text) in files_under(&["src", "crates"]) {
        for (name, len) in long_functions(&rel, &text) {
            if !allowed.contains(&format!("`{name}`")) {
                found.push(format!("{name}: {len} lines"));
            }
        }
    }
    assert!(found.is_empty(), "functions over 100 lines (split them, or list them under \"Better whole\" in docs/design.md):\n{}", found.join("\n"));
}
