//! The operator's commands beside check and repair: diagnose (the support
//! desk), snapshot (the nightly job), preflight (before an upgrade).

pub mod diagnose;
pub mod preflight;
pub mod snapshot;
