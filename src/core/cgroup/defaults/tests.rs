//! The table of implicit device rules: each row's effect, and that the unknown sets are
//! intersections, never wider than any candidate.

use super::*;

fn numbers(rules: &[DeviceRule]) -> Vec<String> {
    rules
        .iter()
        .map(|r| {
            let n = |v: Option<u32>| v.map_or("*".to_string(), |v| v.to_string());
            let t = match r.kind {
                DeviceType::Char => 'c',
                DeviceType::Block => 'b',
                DeviceType::All => 'a',
            };
            format!("{t} {}:{} {}", n(r.major), n(r.minor), r.access)
        })
        .collect()
}

fn known(kind: Kind, v: &str) -> Runtime {
    Runtime::Known(kind, Some(Version::parse(v).unwrap()))
}

const BASE: [&str; 10] = [
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:8 rwm",
    "c 1:7 rwm",
    "c 5:0 rwm",
    "c 1:5 rwm",
    "c 1:9 rwm",
    "c 136:* rwm",
    "c 5:2 rwm",
];

fn with(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = BASE.iter().map(|s| s.to_string()).collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v.sort();
    v
}

fn sorted(runtime: Runtime, paths: &[&str]) -> Vec<String> {
    let mut v = numbers(&implicit_rules(runtime, paths));
    v.sort();
    v
}

#[test]
fn versions_parse_as_runtimes_print_them() {
    assert_eq!(Version::parse("1.1.5"), Some(Version(1, 1, 5)));
    assert_eq!(Version::parse("v1.2.3"), Some(Version(1, 2, 3)));
    assert_eq!(Version::parse("1.2.0-rc.1"), Some(Version(1, 2, 0)));
    assert_eq!(Version::parse("1.1.5+ds1"), Some(Version(1, 1, 5)));
    assert_eq!(Version::parse("1.8"), Some(Version(1, 8, 0)));
    for bad in ["", "1", "x.y", "1.2.3.4", "1.-2"] {
        assert_eq!(Version::parse(bad), None, "{bad}");
    }
}

#[test]
fn each_runc_row_adds_tun_only_where_that_release_did() {
    for (v, tun) in [
        ("1.0.0", true),
        ("1.1.5", true),
        ("1.2.0-rc.1", false),
        ("1.2.0", false),
        ("1.2.3", false),
        ("1.2.4", true),
        ("1.3.0", true),
    ] {
        let want = if tun {
            with(&["c 10:200 rwm"])
        } else {
            with(&[])
        };
        assert_eq!(sorted(known(Kind::Runc, v), &[]), want, "runc {v}");
    }
}

#[test]
fn each_crun_row_adds_the_console_and_tun_only_where_that_release_did() {
    for (v, tun) in [
        ("1.4.5", true),
        ("1.5", false),
        ("1.8.1", false),
        ("1.20", false),
        ("1.21", true),
    ] {
        let mut extra = vec!["c 5:1 rwm"];
        if tun {
            extra.push("c 10:200 rwm");
        }
        assert_eq!(sorted(known(Kind::Crun, v), &[]), with(&extra), "crun {v}");
    }
}

#[test]
fn runc_drops_a_default_named_by_linux_devices_and_crun_does_not() {
    let paths = ["/dev/null"];
    let runc = numbers(&implicit_rules(known(Kind::Runc, "1.1.5"), &paths));
    assert!(!runc.contains(&"c 1:3 rwm".to_string()));
    let crun = numbers(&implicit_rules(known(Kind::Crun, "1.8.1"), &paths));
    assert!(crun.contains(&"c 1:3 rwm".to_string()));
}

#[test]
fn an_unknown_version_is_the_intersection_of_that_runtimes_rows() {
    assert_eq!(sorted(Runtime::Known(Kind::Runc, None), &[]), with(&[]));
    assert_eq!(
        sorted(Runtime::Known(Kind::Crun, None), &[]),
        with(&["c 5:1 rwm"])
    );
}

#[test]
fn an_unknown_runtime_is_the_intersection_of_every_row_and_never_wider() {
    let paths = ["/dev/null"];
    let unknown = implicit_rules(Runtime::Unknown, &paths);
    let mut got = numbers(&unknown);
    got.sort();
    let mut want = with(&[]);
    want.retain(|r| r != "c 1:3 rwm");
    assert_eq!(got, want);
    // Every rule of the unknown set is in every row's set: narrower than each runtime's own.
    for row in TABLE {
        let theirs = row.rules(&paths);
        for r in &unknown {
            assert!(theirs.contains(r), "{row:?} lacks {r:?}");
        }
    }
}

#[test]
fn every_version_falls_in_exactly_one_row() {
    for kind in [Kind::Runc, Kind::Crun] {
        for v in [
            "0.1.0", "1.1.5", "1.2.0", "1.2.4", "1.5.0", "1.21.0", "9.9.9",
        ] {
            let rows = entries(Runtime::Known(kind, Version::parse(v)));
            assert_eq!(rows.len(), 1, "{kind:?} {v}: {rows:?}");
        }
    }
}

#[test]
fn the_exe_name_names_the_runtime() {
    let v = Version::parse("1.1.5");
    assert_eq!(
        Runtime::from_exe_name("runc", v),
        Runtime::Known(Kind::Runc, v)
    );
    for name in ["runc.amd64", "runc-1.2.3", "docker-runc"] {
        assert_eq!(
            Runtime::from_exe_name(name, None),
            Runtime::Known(Kind::Runc, None),
            "{name}"
        );
    }
    assert_eq!(
        Runtime::from_exe_name("crun", None),
        Runtime::Known(Kind::Crun, None)
    );
    for name in [
        "runcx",
        "youki",
        "runsc",
        "containerd-shim-runc-v2",
        "migcage",
        "",
    ] {
        assert_eq!(
            Runtime::from_exe_name(name, None),
            Runtime::Unknown,
            "{name}"
        );
    }
}

#[test]
fn crun_1_8_1_is_what_its_devices_list_showed_here() {
    // `sort devices.list` of a crun 1.8.1 container (spec: deny all, nothing else allowed).
    let listed = [
        "b *:* m",
        "c *:* m",
        "c 136:* rwm",
        "c 1:3 rwm",
        "c 1:5 rwm",
        "c 1:7 rwm",
        "c 1:8 rwm",
        "c 1:9 rwm",
        "c 5:0 rwm",
        "c 5:1 rwm",
        "c 5:2 rwm",
    ];
    let mut want: Vec<String> = listed.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(sorted(known(Kind::Crun, "1.8.1"), &[]), want);
}

#[test]
fn a_stated_version_refines_only_the_runtime_detected() {
    let stated = &Runtime::parse("runc 1.1.5").into_iter().collect::<Vec<_>>()[..];
    assert_eq!(stated, [known(Kind::Runc, "1.1.5")]);
    assert_eq!(
        Runtime::parse("crun 1.8.1"),
        Some(known(Kind::Crun, "1.8.1"))
    );
    for bad in ["runc", "youki 0.3.0", "runc one", ""] {
        assert_eq!(Runtime::parse(bad), None, "{bad}");
    }
    let runc = Runtime::Known(Kind::Runc, None);
    assert_eq!(runc.refined_by(stated), known(Kind::Runc, "1.1.5"));
    assert_eq!(runc.refined_by(&[]), runc);
    // Another runtime, or none detected: the statement is not taken.
    let crun = Runtime::Known(Kind::Crun, None);
    assert_eq!(crun.refined_by(stated), crun);
    assert_eq!(Runtime::Unknown.refined_by(stated), Runtime::Unknown);
    // Several statements: each runtime takes its own.
    let both = [known(Kind::Crun, "1.8.1"), known(Kind::Runc, "1.1.5")];
    assert_eq!(runc.refined_by(&both), known(Kind::Runc, "1.1.5"));
    assert_eq!(crun.refined_by(&both), known(Kind::Crun, "1.8.1"));
    assert_eq!(Runtime::Unknown.refined_by(&both), Runtime::Unknown);
}
