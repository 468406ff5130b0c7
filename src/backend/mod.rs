//! The back ends that apply a plan, and the one pipeline they share: the OCI hook ([`hook`]),
//! the runtime wrapper ([`runtime`]) and the CDI spec generator ([`cdi`]), and the one
//! reader of a bundle's config.json they share ([`spec`]).

pub mod cdi;
pub mod commands;
pub mod hook;
pub mod pipeline;
pub mod runtime;
pub mod spec;
