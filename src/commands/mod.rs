//! The operator's commands beside check and repair: diagnose (the support
//! desk), snapshot (the nightly job), preflight (before an upgrade), summary
//! (headquarters' view of many machines' reports).

pub mod diagnose;
pub mod preflight;
pub mod snapshot;
pub mod summary;
