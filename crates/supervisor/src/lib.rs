//! Supervision of k0x's child processes.
//!
//! Components are described by a [`Spec`]; the supervisor starts them in dependency order, gates
//! dependents on readiness probes, restarts them under their [`RestartPolicy`], and stops them in
//! reverse order without leaving children behind.

pub mod spec;

pub use spec::{Probe, ProbeTiming, Readiness, RestartPolicy, Spec};
