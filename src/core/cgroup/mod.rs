//! cgroup device rules as data: the full rule list a runtime put in a container's cgroup
//! ([`rules`], with each runtime's implicit rules per version in [`defaults`]) and the eBPF
//! device program that enforces a rule list ([`program`]).

pub mod defaults;
pub mod program;
pub mod rules;
