//! The exit status of a run, as a value: nothing below `main` exits the
//! process, every mode returns an [`Exit`] and `main` turns it into the
//! status, so the summary and the reports are always printed first.
//!
//! The statuses are coreutils': 0 all good; 1 a file could not be read,
//! failed its check, changed during the read or (`--audit`) the tree
//! differs, or the output could not be written; 2 a usage error.

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    /// 0: everything was hashed, verified or matched.
    Success,
    /// 1: something failed; each failure was reported on stderr.
    Failure,
    /// 2: the command line cannot be run as given.
    Usage,
}

impl Exit {
    /// `Failure` if `failed`, else `Success`.
    pub fn failed_if(failed: bool) -> Exit {
        if failed {
            Exit::Failure
        } else {
            Exit::Success
        }
    }

    /// The worse of two outcomes.
    pub fn and(self, other: Exit) -> Exit {
        self.max(other)
    }

    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::Usage => 2,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_wins() {
        assert_eq!(Exit::Success.and(Exit::Failure), Exit::Failure);
        assert_eq!(Exit::Usage.and(Exit::Failure), Exit::Usage);
        assert_eq!(Exit::failed_if(false).code(), 0);
        assert_eq!(Exit::failed_if(true).code(), 1);
    }
}
