//! `custodian preflight` (being built, issue #5).

use anyhow::Result;

use crate::cli::PreflightArgs;
use crate::exit::ExitStatus;

pub fn run(_args: &PreflightArgs, _quiet: bool) -> Result<ExitStatus> {
    crate::not_built("preflight", 5)
}
