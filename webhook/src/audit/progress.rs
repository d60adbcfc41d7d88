//! A progress bar for an audit on a terminal: a large cluster takes a while,
//! and an operator should see that it moves, how fast, and what it lists.
//! The total grows as lists report how many objects remain. Hidden when
//! stderr is not a terminal (a CronJob, a pipe), so logs stay clean.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where an audit reports its progress.
#[derive(Debug, Clone)]
pub struct Progress(ProgressBar);

impl Progress {
    /// No progress shown.
    pub fn hidden() -> Self {
        Self(ProgressBar::hidden())
    }

    /// A bar on stderr, drawn only when stderr is a terminal.
    pub fn stderr() -> Self {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(10));
        bar.set_style(
            ProgressStyle::with_template("{spinner} {wide_msg} {bar:30} {pos}/{len} objects ({per_sec}, {elapsed})")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        Self(bar)
    }

    /// Starts listing `resource`.
    pub fn listing(&self, resource: &str) {
        self.0.set_message(format!("auditing {resource}"));
    }

    /// `count` more objects are known to exist.
    pub fn found(&self, count: u64) {
        self.0.inc_length(count);
    }

    /// `count` objects were judged.
    pub fn judged(&self, count: u64) {
        self.0.inc(count);
    }

    /// The audit is over: the bar is removed.
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}
