//! `custodian diagnose` (being built, issue #5).

use anyhow::Result;

use crate::cli::DiagnoseArgs;
use crate::exit::ExitStatus;

pub fn run(_args: &DiagnoseArgs, _quiet: bool) -> Result<ExitStatus> {
    crate::not_built("diagnose", 5)
}
