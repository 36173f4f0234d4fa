//! `custodian snapshot` (being built, issue #5).

use anyhow::Result;

use crate::cli::SnapshotArgs;
use crate::exit::ExitStatus;

pub fn run(_args: &SnapshotArgs, _quiet: bool) -> Result<ExitStatus> {
    crate::not_built("snapshot", 5)
}
