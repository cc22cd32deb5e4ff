//! A transfer's progress on a terminal: bytes, rate and time left, redrawn in place on stderr
//! (only when stderr is a terminal; scripts get nothing, or `--json` lines when done).

use std::io::Write;
use std::time::{Duration, Instant};

/// Redraw at most this often.
const REDRAW_EVERY: Duration = Duration::from_millis(100);

pub struct Progress {
    name: String,
    total: u64,
    /// Where this attempt started (a resumed transfer's rate counts only what it moved).
    from: u64,
    started: Instant,
    drawn: Option<Instant>,
    on_terminal: bool,
}

impl Progress {
    pub fn new(name: &str, total: u64, from: u64) -> Progress {
        // SAFETY: isatty only looks at the descriptor.
        let on_terminal = unsafe { libc::isatty(2) } == 1;
        Progress { name: name.to_owned(), total, from, started: Instant::now(), drawn: None, on_terminal }
    }

    pub fn update(&mut self, done: u64) {
        if !self.on_terminal || self.drawn.is_some_and(|at| at.elapsed() < REDRAW_EVERY) {
            return;
        }
        self.drawn = Some(Instant::now());
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = done.saturating_sub(self.from) as f64 / seconds;
        let left = match rate > 0.0 {
            true => format!("{:.0} s left", self.total.saturating_sub(done) as f64 / rate),
            false => "…".to_owned(),
        };
        let percent = (done * 100).checked_div(self.total).unwrap_or(100);
        eprint!(
            "\r\x1b[K{}  {} / {}  {percent}%  {}/s  {left}",
            self.name,
            bytes(done),
            bytes(self.total),
            bytes(rate as u64)
        );
        let _ = std::io::stderr().flush();
    }

    /// The line is done with (the transfer ended either way).
    pub fn finish(&mut self, done: u64) {
        if self.on_terminal {
            self.drawn = None;
            self.update(done);
            eprintln!();
        }
    }
}

/// `1.5 MB` and the like (powers of 1000, as transfer rates are usually given).
pub fn bytes(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < units.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ => format!("{value:.1} {}", units[unit]),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(super::bytes(999), "999 B");
        assert_eq!(super::bytes(1_500_000), "1.5 MB");
        assert_eq!(super::bytes(2_000_000_000), "2.0 GB");
    }
}
