//! The spec as block-style YAML, converted from its JSON text as that is read.
//!
//! serde_yaml (a transpiled libyaml emitter, and for every string a check of how YAML would
//! read it plain) took 3.6 ms of the 12 ms of `cdi generate` on dgx-8x7, whose spec is 124 KB
//! (#18); building a `serde_yaml::Value` first and writing that still took 1.6 ms, most of it
//! in allocating and freeing the tree. serde_json writes the spec's JSON (fields in their
//! declared order) in a fraction of that, and this file turns the text into YAML in one pass,
//! with no tree. A spec holds only maps with identifier keys, sequences, strings, integers and
//! booleans. A string is written plain only when it has no character YAML gives a meaning to
//! and no YAML 1.1 or 1.2 parser could read it as anything but a string (`0`, `1:5` (base 60
//! in YAML 1.1), `yes`, `null`, `1e3` are quoted); anything else is single-quoted, or
//! double-quoted with JSON's escapes (a subset of YAML's) where it holds a control character.
//! The layout is serde_yaml's: two spaces per level, a sequence under a key at the key's own
//! indentation.

/// A JSON map's opening and closing bytes, as numbers: tests/layout.rs finds where a function
/// ends by counting braces, and a brace in a byte literal would mislead it.
const MAP_OPEN: u8 = 0x7b;
const MAP_CLOSE: u8 = 0x7d;

/// The JSON document `json` (as serde_json writes it) as a YAML document.
///
/// # Panics
/// On text that is not JSON: it is only ever given serde_json's own output.
pub fn from_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut cur = Cursor { text: json, at: 0 };
    if cur.non_empty(MAP_OPEN) {
        map(&mut cur, &mut out, 0);
    } else {
        inline(&mut cur, &mut out);
        out.push('\n');
    }
    out
}

/// A position in the JSON text.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl Cursor<'_> {
    /// The next byte that is not white space (not consumed).
    fn peek(&mut self) -> u8 {
        let b = self.text.as_bytes();
        while self.at < b.len() && b[self.at].is_ascii_whitespace() {
            self.at += 1;
        }
        *b.get(self.at).expect("JSON text ends inside a value")
    }

    fn eat(&mut self, want: u8) {
        let got = self.peek();
        assert_eq!(
            got, want,
            "JSON text: {:?} where {:?} belongs",
            got as char, want as char
        );
        self.at += 1;
    }

    /// Whether the next value is a map (`{`) or a sequence (`[`), as `open` says, with
    /// something in it.
    fn non_empty(&mut self, open: u8) -> bool {
        if self.peek() != open {
            return false;
        }
        let close = if open == MAP_OPEN { MAP_CLOSE } else { b']' };
        let mut probe = Cursor {
            text: self.text,
            at: self.at + 1,
        };
        probe.peek() != close
    }

    /// A string token, unescaped.
    fn string(&mut self) -> String {
        self.peek();
        let b = self.text.as_bytes();
        let start = self.at;
        let mut i = start + 1;
        while b[i] != b'"' {
            i += if b[i] == b'\\' { 2 } else { 1 };
        }
        self.at = i + 1;
        let token = &self.text[start..self.at];
        if token.contains('\\') {
            serde_json::from_str(token).expect("a JSON string token")
        } else {
            token[1..token.len() - 1].to_string()
        }
    }

    /// A number, `true`, `false` or `null`, as written.
    fn word(&mut self) -> &str {
        self.peek();
        let b = self.text.as_bytes();
        let start = self.at;
        while self.at < b.len()
            && !matches!(
                b[self.at],
                b',' | b']' | MAP_CLOSE | b' ' | b'\t' | b'\r' | b'\n'
            )
        {
            self.at += 1;
        }
        &self.text[start..self.at]
    }

    /// After a value in a map or sequence: true when another follows (`,` eaten), false at its
    /// end (`}` or `]` eaten).
    fn next_item(&mut self) -> bool {
        let b = self.peek();
        self.at += 1;
        b == b','
    }
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// A scalar or an empty collection, on the current line.
fn inline(cur: &mut Cursor<'_>, out: &mut String) {
    match cur.peek() {
        b'"' => scalar(out, &cur.string()),
        MAP_OPEN => {
            cur.eat(MAP_OPEN);
            cur.eat(MAP_CLOSE);
            out.push_str("{}");
        }
        b'[' => {
            cur.eat(b'[');
            cur.eat(b']');
            out.push_str("[]");
        }
        _ => out.push_str(cur.word()),
    }
}

/// A non-empty map at indentation `at`; its first key goes where the output is (the caller
/// has indented it, or it follows a sequence's `- `).
fn map(cur: &mut Cursor<'_>, out: &mut String, at: usize) {
    cur.eat(MAP_OPEN);
    let mut first = true;
    loop {
        if !first {
            indent(out, at);
        }
        first = false;
        scalar(out, &cur.string());
        cur.eat(b':');
        out.push(':');
        if cur.non_empty(MAP_OPEN) {
            out.push('\n');
            indent(out, at + 2);
            map(cur, out, at + 2);
        } else if cur.non_empty(b'[') {
            out.push('\n');
            seq(cur, out, at);
        } else {
            out.push(' ');
            inline(cur, out);
            out.push('\n');
        }
        if !cur.next_item() {
            return;
        }
    }
}

/// A non-empty sequence, each `- ` at indentation `at`.
fn seq(cur: &mut Cursor<'_>, out: &mut String, at: usize) {
    cur.eat(b'[');
    loop {
        indent(out, at);
        out.push_str("- ");
        if cur.non_empty(MAP_OPEN) {
            map(cur, out, at + 2);
        } else if cur.non_empty(b'[') {
            out.push('\n');
            seq(cur, out, at + 2);
        } else {
            inline(cur, out);
            out.push('\n');
        }
        if !cur.next_item() {
            return;
        }
    }
}

/// A string, plain where that is safe, else quoted.
fn scalar(out: &mut String, s: &str) {
    if plain_is_safe(s) {
        out.push_str(s);
    } else if s.chars().any(char::is_control) {
        // JSON's escapes (\n, \t, \", \\, \uXXXX) all mean the same in a YAML double-quoted
        // scalar.
        out.push_str(&serde_json::to_string(s).expect("a string always serializes"));
    } else {
        out.push('\'');
        out.push_str(&s.replace('\'', "''"));
        out.push('\'');
    }
}

/// Can `s` be written plain and be read back as this very string by any YAML 1.1 or 1.2
/// parser? Only for what starts with a letter, `/` or `_` and holds letters, digits and
/// `_ . / - + = ,` after, and is not one of the words YAML 1.1 reads as a boolean or null; and
/// for a version of three numbers (`0.5.0`, the spec's `cdiVersion`), which no parser reads as
/// a number.
fn plain_is_safe(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        return true;
    }
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    if !(first.is_ascii_alphabetic() || first == '/' || first == '_') {
        return false;
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || "_./-+=,".contains(c)) {
        return false;
    }
    const WORDS: [&str; 13] = [
        "y", "n", "yes", "no", "true", "false", "on", "off", "null", "nan", "inf", "infinity",
        "none",
    ];
    !WORDS.iter().any(|w| s.eq_ignore_ascii_case(w)) && !s.starts_with("/*")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(v: &serde_json::Value) {
        let text = from_json(&v.to_string());
        let back: serde_json::Value =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(&back, v, "{text}");
    }

    fn yaml(v: serde_json::Value) -> String {
        from_json(&v.to_string())
    }

    #[test]
    fn the_layout_is_serde_yamls() {
        let v = json!({
            "cdiVersion": "0.5.0",
            "kind": "nvidia.com/gpu",
            "devices": [{
                "name": "0:1",
                "containerEdits": {
                    "deviceNodes": [{"path": "/dev/nvidia0", "major": 195, "permissions": "rw"}],
                    "env": [],
                    "mounts": [{"options": ["ro", "bind"], "hostPath": "/dev/null"}]
                }
            }],
            "containerEdits": {}
        });
        let text = yaml(v.clone());
        assert_eq!(
            text,
            serde_yaml::to_string(&v)
                .unwrap()
                .replace("name: 0:1", "name: '0:1'")
        );
        round_trip(&v);
    }

    #[test]
    fn strings_any_parser_could_misread_are_quoted() {
        for s in [
            "",
            "0",
            "1:5",
            "07",
            "1e3",
            "0x1f",
            ".5",
            "-",
            "- x",
            "yes",
            "No",
            "ON",
            "null",
            "~",
            "Null",
            "true",
            "y",
            "n",
            ".inf",
            "NaN",
            "a: b",
            "a #b",
            "#x",
            "*ref",
            "&anchor",
            "!tag",
            "%x",
            "@x",
            "`x",
            "{x}",
            "[x]",
            "x,y",
            "'q'",
            "\"q\"",
            " lead",
            "trail ",
            "it's",
            "line\nbreak",
            "tab\there",
            "bell\u{7}",
            "ünï",
            "a|b",
            "a>b",
            "?x",
            ":x",
            "x:",
            "/*comment",
            "2026-12-07",
            "12:30:00",
            "+1",
            "=",
            "MIGCAGE_CONFIG=/etc/x.toml",
            "0.5.0",
            "1.2",
            "1.2.3.4",
            "1..2",
        ] {
            let v = json!({ "k": s, "list": [s], s: 1 });
            round_trip(&v);
        }
    }

    #[test]
    fn plain_only_where_it_is_plainly_a_string() {
        let text = yaml(json!({"a": "/dev/nvidia-caps/nvidia-cap12", "b": "0", "c": "yes"}));
        assert_eq!(text, "a: /dev/nvidia-caps/nvidia-cap12\nb: '0'\nc: 'yes'\n");
    }

    #[test]
    fn white_space_in_the_json_changes_nothing() {
        let v = json!({"a": [1, {"b": "c d", "e": []}], "f": {}, "g": "x\"y\\z\u{1}"});
        assert_eq!(
            from_json(&serde_json::to_string_pretty(&v).unwrap()),
            yaml(v.clone())
        );
        round_trip(&v);
        assert_eq!(yaml(json!("top")), "top\n");
        assert_eq!(yaml(json!({})), "{}\n");
    }

    #[test]
    fn nested_sequences_numbers_and_booleans_round_trip() {
        round_trip(&json!({
            "a": [[1, 2], [], [[true, false]], [{"x": null}]],
            "b": {"c": {"d": [ {"e": -3, "f": 1.5} ]}},
            "g": [{}, [], "", 0]
        }));
    }
}
