//! Exit codes: the same table as `--help` and the README.

/// What a command's outcome means to a caller (cron, monitoring, a shell).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Healthy / go / repaired and verified / every ID served.
    Success,
    /// Problems found / no-go / repaired with losses / some ID not served.
    Problems,
    /// Could not run: bad arguments, missing file, not a database, busy.
    CouldNotRun,
    /// Repair stopped or failed its verification; the original is untouched.
    RepairFailed,
}

impl ExitStatus {
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Problems => 1,
            ExitStatus::CouldNotRun => 2,
            ExitStatus::RepairFailed => 3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ExitStatus;

    #[test]
    fn codes_match_the_contract() {
        assert_eq!(ExitStatus::Success.code(), 0);
        assert_eq!(ExitStatus::Problems.code(), 1);
        assert_eq!(ExitStatus::CouldNotRun.code(), 2);
        assert_eq!(ExitStatus::RepairFailed.code(), 3);
    }
}
