//! The one place that hands out progress bars: on stderr, only when stderr is
//! a terminal, never under `--quiet` or when the report goes to stdout.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, Clone, Copy)]
pub struct Progress {
    enabled: bool,
}

impl Progress {
    pub fn new(quiet: bool, report_on_stdout: bool) -> Progress {
        Progress {
            enabled: !quiet && !report_on_stdout && std::io::stderr().is_terminal(),
        }
    }

    pub fn hidden() -> Progress {
        Progress { enabled: false }
    }

    /// A counter of rows for a pass whose length is not known in advance.
    pub fn counter(&self, what: &str) -> ProgressBar {
        if !self.enabled {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{spinner} {msg:>28} {human_pos} rows")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()); // template is a constant
        bar.set_style(style);
        bar.set_message(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    /// A bar over `len` units, labelled `what`.
    pub fn bar(&self, len: u64, what: &str) -> ProgressBar {
        if !self.enabled {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{msg:>28} [{bar:30}] {percent:>3}% {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()) // template is a constant
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }
}
