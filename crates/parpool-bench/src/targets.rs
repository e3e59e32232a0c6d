//! The targets, each checked against this run's numbers.

use std::fmt;

/// How a measured value is shown.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unit {
    /// A ratio of medians (×).
    Ratio,
    MiB,
    Millis,
    Micros,
}

/// One target: `measured` must be at most (or, if `strict`, under) `limit`.
#[derive(Clone, Debug)]
pub struct Target {
    pub what: String,
    pub measured: Option<f64>,
    pub limit: f64,
    pub strict: bool,
    pub unit: Unit,
    /// `false` if the row behind the number produced wrong output.
    pub correct: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    Pass,
    Fail,
    /// The row did not run (e.g. parpool not available in this build).
    NotRun,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::NotRun => "N/A",
        })
    }
}

impl Target {
    pub fn new(what: impl Into<String>, measured: Option<f64>, limit: f64, unit: Unit) -> Target {
        Target {
            what: what.into(),
            measured,
            limit,
            strict: false,
            unit,
            correct: true,
        }
    }

    pub fn strict(mut self) -> Self {
        self.strict = true;
        self
    }

    pub fn correct(mut self, ok: bool) -> Self {
        self.correct = ok;
        self
    }

    pub fn verdict(&self) -> Verdict {
        match self.measured {
            None => Verdict::NotRun,
            Some(_) if !self.correct => Verdict::Fail,
            Some(m) if m < self.limit || (!self.strict && m == self.limit) => Verdict::Pass,
            Some(_) => Verdict::Fail,
        }
    }

    pub fn fmt_value(&self, v: f64) -> String {
        match self.unit {
            Unit::Ratio => format!("{v:.3}×"),
            Unit::MiB => format!("{v:.1} MiB"),
            Unit::Millis => format!("{v:.2} ms"),
            Unit::Micros => format!("{v:.1} µs"),
        }
    }

    /// "measured / limit" as a percentage: under 100 % passes.
    pub fn of_limit(&self) -> Option<f64> {
        self.measured.map(|m| 100.0 * m / self.limit)
    }

    pub fn limit_text(&self) -> String {
        let op = if self.strict { "<" } else { "≤" };
        format!("{op} {}", self.fmt_value(self.limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let t = |m| Target::new("x", m, 1.5, Unit::Ratio);
        assert_eq!(t(Some(1.2)).verdict(), Verdict::Pass);
        assert_eq!(t(Some(1.5)).verdict(), Verdict::Pass);
        assert_eq!(t(Some(1.5)).strict().verdict(), Verdict::Fail);
        assert_eq!(t(Some(1.6)).verdict(), Verdict::Fail);
        assert_eq!(t(Some(1.0)).correct(false).verdict(), Verdict::Fail);
        assert_eq!(t(None).verdict(), Verdict::NotRun);
    }
}
