//! What a container engine's version says it can do: the version from what its binary prints
//! (`containerd --version`, `dockerd --version`), whether it has CDI, and which containerd
//! config layout it writes. Pure: the text in, the answer out.
//!
//! - containerd: CDI from 1.7 (the CRI plugin's `enable_cdi` and `cdi_spec_dirs`; 1.6 has
//!   neither and ignores the CRI `CDI_devices` field); config version 3 from 2.0 (which still
//!   reads version 2 files, migrating them).
//! - Docker: CDI from 25.0 (`features.cdi` in daemon.json; `docker run --device
//!   nvidia.com/gpu=...`); before that `--device` takes only paths.

/// The version type the runtimes' rules use too (`1.7.24`, `v2.0.1`, `1.6.20~ds1`).
pub use crate::core::cgroup::defaults::Version;

/// The engines whose CDI support is a matter of version and configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Containerd,
    Docker,
}

impl Engine {
    /// The binary that prints the engine's version.
    pub fn binary(self) -> &'static str {
        match self {
            Engine::Containerd => "containerd",
            Engine::Docker => "dockerd",
        }
    }

    /// The first version with CDI.
    pub fn first_with_cdi(self) -> Version {
        match self {
            Engine::Containerd => Version(1, 7, 0),
            Engine::Docker => Version(25, 0, 0),
        }
    }
}

/// The version in `containerd --version` (`containerd github.com/containerd/containerd
/// v1.7.24 88bf19b...`, Debian's `... 1.6.20~ds1 1.6.20~ds1-1+deb12u3`, 2.x's
/// `containerd github.com/containerd/containerd/v2 2.1.9+unknown`) or `dockerd --version`
/// (`Docker version 20.10.24+dfsg1, build 5d6db84`), or a bare version (`1.7`, `v2.0.1`) as
/// an operator states it. An error names what was found.
pub fn parse_version(engine: Engine, output: &str) -> Result<Version, String> {
    let line = output.lines().next().unwrap_or_default().trim();
    let word = match engine {
        _ if Version::parse(line).is_some() => Some(line),
        Engine::Containerd => line
            .strip_prefix("containerd ")
            .and_then(|rest| rest.split_whitespace().nth(1)),
        Engine::Docker => line
            .strip_prefix("Docker version ")
            .and_then(|rest| rest.split([',', ' ']).next()),
    };
    word.and_then(Version::parse).ok_or_else(|| {
        format!(
            "{} --version printed {line:?}, which holds no version migcage can read",
            engine.binary()
        )
    })
}

/// Ok when `version` of `engine` has CDI; otherwise the one line that says so and what to do.
pub fn check_cdi(engine: Engine, version: Version) -> Result<(), String> {
    let first = engine.first_with_cdi();
    if version >= first {
        return Ok(());
    }
    let (name, instead) = match engine {
        Engine::Containerd => (
            "containerd",
            "upgrade containerd, or run migcage configure containerd without --cdi (migcage as a runtime works on 1.6)",
        ),
        Engine::Docker => (
            "Docker",
            "upgrade Docker, or run migcage configure docker without --cdi (migcage as a runtime works on any version)",
        ),
    };
    Err(format!(
        "{name} {version} has no CDI (it came in {name} {}.{}): {instead}",
        first.0, first.1
    ))
}

/// The config version a containerd of `version` writes in a new file: 3 from 2.0, else 2.
pub fn containerd_config_version(version: Version) -> i64 {
    if version >= Version(2, 0, 0) {
        3
    } else {
        2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_as_the_binaries_print_them() {
        let c = |s| parse_version(Engine::Containerd, s);
        assert_eq!(
            c("containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3\n"),
            Ok(Version(1, 6, 20))
        );
        assert_eq!(
            c("containerd github.com/containerd/containerd v1.7.24 88bf19b2105c8b17560993bee28a01ddc2f97182"),
            Ok(Version(1, 7, 24))
        );
        assert_eq!(
            c("containerd github.com/containerd/containerd/v2 2.1.9+unknown "),
            Ok(Version(2, 1, 9))
        );
        assert_eq!(c("1.7"), Ok(Version(1, 7, 0)));
        assert_eq!(c("v2.0.1"), Ok(Version(2, 0, 1)));
        let d = |s| parse_version(Engine::Docker, s);
        assert_eq!(
            d("Docker version 20.10.24+dfsg1, build 5d6db84\n"),
            Ok(Version(20, 10, 24))
        );
        assert_eq!(
            d("Docker version 25.0.3, build f417435"),
            Ok(Version(25, 0, 3))
        );
        assert_eq!(d("28.5.2"), Ok(Version(28, 5, 2)));
    }

    #[test]
    fn unreadable_versions_name_what_was_printed() {
        for (engine, text) in [
            (Engine::Containerd, ""),
            (Engine::Containerd, "containerd"),
            (
                Engine::Containerd,
                "ctr github.com/containerd/containerd 1.7.0",
            ),
            (
                Engine::Containerd,
                "containerd github.com/containerd/containerd dev",
            ),
            (Engine::Docker, "Docker version , build x"),
            (Engine::Docker, "Podman version 4.3.1"),
        ] {
            let e = parse_version(engine, text).unwrap_err();
            assert!(
                e.starts_with(&format!("{} --version printed {:?}", engine.binary(), text)),
                "{e}"
            );
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn cdi_from_containerd_1_7_and_docker_25() {
        use Engine::*;
        for (engine, v, ok) in [
            (Containerd, Version(1, 6, 20), false),
            (Containerd, Version(1, 6, 99), false),
            (Containerd, Version(1, 7, 0), true),
            (Containerd, Version(2, 1, 9), true),
            (Docker, Version(20, 10, 24), false),
            (Docker, Version(24, 0, 9), false),
            (Docker, Version(25, 0, 0), true),
            (Docker, Version(28, 5, 2), true),
        ] {
            assert_eq!(check_cdi(engine, v).is_ok(), ok, "{engine:?} {v}");
        }
        assert_eq!(
            check_cdi(Containerd, Version(1, 6, 20)).unwrap_err(),
            "containerd 1.6.20 has no CDI (it came in containerd 1.7): upgrade containerd, or run migcage configure containerd without --cdi (migcage as a runtime works on 1.6)"
        );
        assert!(check_cdi(Docker, Version(24, 0, 9))
            .unwrap_err()
            .starts_with("Docker 24.0.9 has no CDI (it came in Docker 25.0): "));
    }

    #[test]
    fn containerd_2_writes_config_version_3() {
        assert_eq!(containerd_config_version(Version(1, 6, 20)), 2);
        assert_eq!(containerd_config_version(Version(1, 7, 24)), 2);
        assert_eq!(containerd_config_version(Version(2, 0, 0)), 3);
        assert_eq!(containerd_config_version(Version(2, 1, 9)), 3);
    }
}
