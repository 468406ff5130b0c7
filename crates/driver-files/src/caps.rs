//! `NVIDIA_DRIVER_CAPABILITIES`: one capability, and sets of them.

use std::fmt;

use serde::Serialize;

/// One `NVIDIA_DRIVER_CAPABILITIES` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    Compute,
    Utility,
    Video,
    Graphics,
    Display,
    Ngx,
    /// The 32-bit builds of the libraries of the other capabilities (libnvidia-container looks the
    /// same names up again in the ld cache for the 32-bit architecture).
    Compat32,
}

impl Capability {
    /// Every capability (`NVIDIA_DRIVER_CAPABILITIES=all`), in alphabetical order.
    pub const ALL: [Capability; 7] = [
        Capability::Compute,
        Capability::Compat32,
        Capability::Display,
        Capability::Graphics,
        Capability::Ngx,
        Capability::Utility,
        Capability::Video,
    ];

    /// The name as `NVIDIA_DRIVER_CAPABILITIES` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Compute => "compute",
            Capability::Utility => "utility",
            Capability::Video => "video",
            Capability::Graphics => "graphics",
            Capability::Display => "display",
            Capability::Ngx => "ngx",
            Capability::Compat32 => "compat32",
        }
    }

    /// Parse one capability name (exact, lower case).
    pub fn from_name(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.name() == name)
    }

    fn bit(self) -> u8 {
        match self {
            Capability::Compute => 1,
            Capability::Utility => 1 << 1,
            Capability::Video => 1 << 2,
            Capability::Graphics => 1 << 3,
            Capability::Display => 1 << 4,
            Capability::Ngx => 1 << 5,
            Capability::Compat32 => 1 << 6,
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of capabilities: the ones a file belongs to, or the ones a container asked for.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Caps(u8);

impl Caps {
    pub const NONE: Caps = Caps(0);
    pub const COMPUTE: Caps = Caps(1);
    pub const UTILITY: Caps = Caps(1 << 1);
    pub const VIDEO: Caps = Caps(1 << 2);
    pub const GRAPHICS: Caps = Caps(1 << 3);
    pub const DISPLAY: Caps = Caps(1 << 4);
    pub const NGX: Caps = Caps(1 << 5);
    pub const COMPAT32: Caps = Caps(1 << 6);
    /// Every capability: a file that goes with any request at all (firmware).
    pub const ANY: Caps = Caps(0x7f);

    /// The union of two sets (usable in constants).
    pub const fn or(self, other: Caps) -> Caps {
        Caps(self.0 | other.0)
    }

    pub fn contains(self, cap: Capability) -> bool {
        self.0 & cap.bit() != 0
    }

    /// Whether the two sets share a capability.
    pub fn intersects(self, other: Caps) -> bool {
        self.0 & other.0 != 0
    }

    pub fn insert(&mut self, cap: Capability) {
        self.0 |= cap.bit();
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The capabilities in the set, in [`Capability::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Capability> {
        Capability::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }
}

impl FromIterator<Capability> for Caps {
    fn from_iter<I: IntoIterator<Item = Capability>>(iter: I) -> Self {
        let mut caps = Caps::NONE;
        for c in iter {
            caps.insert(c);
        }
        caps
    }
}

impl Serialize for Caps {
    /// The capability names, as `NVIDIA_DRIVER_CAPABILITIES` spells them.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let names: Vec<&str> = self.iter().map(Capability::name).collect();
        names.serialize(s)
    }
}

impl fmt::Debug for Caps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Capability::name).collect();
        write!(f, "Caps({})", names.join(","))
    }
}
