//! The back ends that apply a plan, and the one pipeline they share: the OCI hook ([`hook`]),
//! the runtime wrapper ([`runtime`]) and the CDI spec generator ([`cdi`]).

pub mod cdi;
pub mod commands;
pub mod hook;
pub mod pipeline;
pub mod runtime;
