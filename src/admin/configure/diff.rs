//! The unified diff `configure --dry-run` prints (3 lines of context), made by `similar`.

use std::borrow::Cow;

use similar::TextDiff;

/// A unified diff of two texts (3 lines of context), empty when their lines are equal. Hunk
/// headers are GNU diff's: a range of one line is written `N`, not `N,1`. Texts are compared line
/// by line, as before `similar` made the diff: a missing final newline is not a difference (the
/// dry run shows what changes in the file's lines).
pub fn unified_diff(old: &str, new: &str, old_label: &str, new_label: &str) -> String {
    let (old, new) = (terminated(old), terminated(new));
    if old == new {
        return String::new();
    }
    TextDiff::from_lines(old.as_ref(), new.as_ref())
        .unified_diff()
        .context_radius(3)
        .header(old_label, new_label)
        .to_string()
}

/// `text` with a final newline when it has lines and lacks one.
fn terminated(text: &str) -> Cow<'_, str> {
    if text.is_empty() || text.ends_with('\n') {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(format!("{text}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                // `-N,L`, or `-N` for one line (GNU's form, which `similar` writes).
                let range = h.split(' ').next().unwrap();
                let (start, len) = range.split_once(',').unwrap_or((range, "1"));
                let start: usize = start.parse().unwrap();
                let len: usize = len.parse().unwrap();
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

    #[test]
    fn a_missing_final_newline_is_no_difference() {
        assert_eq!(unified_diff("a\nb", "a\nb\n", "x", "y"), "");
        assert_eq!(
            unified_diff("{\n}", "{\n  \"a\": 1\n}\n", "x", "y"),
            "--- x\n+++ y\n@@ -1,2 +1,3 @@\n {\n+  \"a\": 1\n }\n"
        );
    }
}
