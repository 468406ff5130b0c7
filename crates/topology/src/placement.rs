//! Where GPU instances may go on a GPU: the placement rules of NVIDIA's MIG user guide as pure
//! code, shared by the simulator (which enforces them) and migcage (which plans with them).
//!
//! A GPU instance occupies the memory slices `[start, start + size)` of its placement; a new one
//! can be created only at one of its profile's possible placements that overlaps no existing
//! instance (nvml.h: "Creation of new GPU instance will fail if there is overlap with the already
//! occupied memory slices"), and no more instances of a profile than its `instance_count`.
//!
//! **Choosing a placement** ([`choose`]): of the free placements, the one that leaves the most
//! room for the largest profiles: after placing there, compare how many instances of each
//! profile could still be created, largest profile first (memory slices, then compute slices);
//! the placement with the greatest such list wins, and of equals the highest start (which is
//! where the driver puts a 1-slice instance first).

use std::fmt;

use crate::models::{GiProfile, Model};

/// A GPU instance's memory slices, `nvmlGpuInstancePlacement_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Placement {
    pub start: u32,
    pub size: u32,
}

impl Placement {
    /// One past the last memory slice.
    pub fn end(&self) -> u32 {
        self.start + self.size
    }

    pub fn overlaps(&self, other: &Placement) -> bool {
        self.start < other.end() && other.start < self.end()
    }
}

impl fmt::Display for Placement {
    /// nvidia-smi's form: `4:4` is start 4, size 4.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.start, self.size)
    }
}

/// A GPU instance of `profile` at `placement`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    pub profile: &'static GiProfile,
    pub placement: Placement,
}

/// Why a set of placed GPU instances breaks the rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("{profile} cannot be placed at {at} on {model}; its placements are {possible}")]
    NotAPlacement {
        model: &'static str,
        profile: &'static str,
        at: Placement,
        possible: String,
    },
    #[error("{a} at {at_a} and {b} at {at_b} overlap in memory slices")]
    Overlap {
        a: &'static str,
        at_a: Placement,
        b: &'static str,
        at_b: Placement,
    },
    #[error("{count} instances of {profile}, {model} allows at most {max}")]
    TooMany {
        model: &'static str,
        profile: &'static str,
        count: u32,
        max: u32,
    },
}

impl GiProfile {
    /// Every placement of this profile on an empty GPU.
    pub fn placements(&self) -> Vec<Placement> {
        self.placement_starts
            .iter()
            .map(|&start| Placement {
                start,
                size: self.placement_size,
            })
            .collect()
    }

    /// The placement of this profile starting at `start`, if that is one of its placements.
    pub fn placement_at(&self, start: u32) -> Option<Placement> {
        self.placements().into_iter().find(|p| p.start == start)
    }
}

/// `1g.5gb`'s placements as nvidia-smi lists them: `{0,1,2,3,4,5,6}:1`.
pub fn placements_text(profile: &GiProfile) -> String {
    let starts: Vec<String> = profile
        .placement_starts
        .iter()
        .map(u32::to_string)
        .collect();
    format!("{{{}}}:{}", starts.join(","), profile.placement_size)
}

/// Check that `placed` obeys the rules of `model`: each at one of its profile's placements, no
/// two overlapping, no profile more often than its instance count.
pub fn check(model: &Model, placed: &[Placed]) -> Result<(), PlacementError> {
    for (i, a) in placed.iter().enumerate() {
        if a.profile.placement_at(a.placement.start) != Some(a.placement) {
            return Err(PlacementError::NotAPlacement {
                model: model.name,
                profile: a.profile.name,
                at: a.placement,
                possible: placements_text(a.profile),
            });
        }
        if let Some(b) = placed[..i]
            .iter()
            .find(|b| b.placement.overlaps(&a.placement))
        {
            return Err(PlacementError::Overlap {
                a: b.profile.name,
                at_a: b.placement,
                b: a.profile.name,
                at_b: a.placement,
            });
        }
    }
    for p in model.gi_profiles {
        let count = placed.iter().filter(|x| x.profile.id == p.id).count() as u32;
        if count > p.instance_count {
            return Err(PlacementError::TooMany {
                model: model.name,
                profile: p.name,
                count,
                max: p.instance_count,
            });
        }
    }
    Ok(())
}

/// The placements of `profile` that overlap nothing in `placed`, lowest start first (what
/// `nvmlDeviceGetGpuInstancePossiblePlacements_v2` lists is [`GiProfile::placements`]; this is
/// what a create can still use). Empty when the profile's instance count is used up.
pub fn free_placements(profile: &GiProfile, placed: &[Placed]) -> Vec<Placement> {
    let existing = placed.iter().filter(|x| x.profile.id == profile.id).count() as u32;
    if existing >= profile.instance_count {
        return Vec::new();
    }
    profile
        .placements()
        .into_iter()
        .filter(|p| placed.iter().all(|x| !x.placement.overlaps(p)))
        .collect()
}

/// `nvmlDeviceGetGpuInstanceRemainingCapacity`: how many more instances of `profile` could be
/// created next to `placed`. Placements of one profile share a size and are aligned to it, so
/// taking free placements lowest first never blocks a better choice.
pub fn remaining_capacity(profile: &GiProfile, placed: &[Placed]) -> u32 {
    let existing = placed.iter().filter(|x| x.profile.id == profile.id).count() as u32;
    let mut taken: Vec<Placement> = Vec::new();
    for p in free_placements(profile, placed) {
        if taken.iter().all(|t| !t.overlaps(&p)) {
            taken.push(p);
        }
    }
    (taken.len() as u32).min(profile.instance_count.saturating_sub(existing))
}

/// The model's profiles, largest first: memory slices, then compute slices, then NVML id.
fn largest_first(model: &Model) -> Vec<&'static GiProfile> {
    let mut profiles: Vec<&'static GiProfile> = model.gi_profiles.iter().collect();
    profiles.sort_by_key(|p| {
        (
            std::cmp::Reverse(p.placement_size),
            std::cmp::Reverse(p.slices),
            p.id,
        )
    });
    profiles
}

/// What is left after placing: remaining capacity of every profile, largest first.
pub fn room(model: &Model, placed: &[Placed]) -> Vec<u32> {
    largest_first(model)
        .into_iter()
        .map(|p| remaining_capacity(p, placed))
        .collect()
}

/// Where a new instance of `profile` goes next to `placed`: the free placement that leaves the
/// most room for the largest profiles, of equals the highest start (see the module's doc).
/// `None` when it does not fit.
pub fn choose(model: &Model, profile: &'static GiProfile, placed: &[Placed]) -> Option<Placement> {
    let mut best: Option<(Vec<u32>, Placement)> = None;
    for p in free_placements(profile, placed) {
        let mut after = placed.to_vec();
        after.push(Placed {
            profile,
            placement: p,
        });
        let score = room(model, &after);
        let better = match &best {
            None => true,
            Some((s, at)) => (&score, p.start) > (s, at.start),
        };
        if better {
            best = Some((score, p));
        }
    }
    best.map(|(_, p)| p)
}

/// Placements for every profile of `wanted` next to `placed` (which do not move), in the order
/// of `wanted`; `None` when no choice of placements fits them all. Largest profiles are placed
/// first, each where [`choose`] would, backtracking over the other free placements when that
/// leaves a smaller one without room.
pub fn fit_all(
    model: &Model,
    placed: &[Placed],
    wanted: &[&'static GiProfile],
) -> Option<Vec<Placement>> {
    let mut order: Vec<usize> = (0..wanted.len()).collect();
    let rank = largest_first(model);
    order.sort_by_key(|&i| rank.iter().position(|p| p.id == wanted[i].id));
    let mut current = placed.to_vec();
    let mut out = vec![None; wanted.len()];
    if fit_rec(model, &mut current, wanted, &order, &mut out) {
        Some(
            out.into_iter()
                .map(|p| p.expect("every slot filled"))
                .collect(),
        )
    } else {
        None
    }
}

fn fit_rec(
    model: &Model,
    current: &mut Vec<Placed>,
    wanted: &[&'static GiProfile],
    order: &[usize],
    out: &mut [Option<Placement>],
) -> bool {
    let Some((&i, rest)) = order.split_first() else {
        return true;
    };
    let profile = wanted[i];
    let mut candidates = free_placements(profile, current);
    // The preferred placement first, then the others highest start first.
    let preferred = choose(model, profile, current);
    candidates.sort_by_key(|p| (Some(*p) != preferred, std::cmp::Reverse(p.start)));
    for p in candidates {
        current.push(Placed {
            profile,
            placement: p,
        });
        out[i] = Some(p);
        if fit_rec(model, current, wanted, rest, out) {
            return true;
        }
        current.pop();
        out[i] = None;
    }
    false
}

#[cfg(test)]
mod tests;
