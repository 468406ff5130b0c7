//! cgroup device rules as data: the full rule list a runtime put in a container's cgroup
//! ([`rules`]) and the eBPF device program that enforces a rule list ([`program`]).

pub mod program;
pub mod rules;
