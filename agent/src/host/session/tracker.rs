//! Screen tracking off the PTY's hot path: the lean screen (cursor, modes, the cursor's line)
//! is kept by a thread of its own, fed the session's output in order, so the reader thread only
//! filters, stores and logs, and a flood's screen is kept up on another core meanwhile.
//!
//! Invariants:
//! - The tracker takes output and queries in stream order, so the answer to a query (the cursor
//!   position) is computed on the screen exactly as it was when the query appeared, as before.
//! - Readers of the screen (prompt detection, cursor-key mode) see it as far as the tracker has
//!   got: at most `TRACKER_QUEUE_CHUNKS` reads behind the output. Prompt detection runs only after
//!   the output has been quiet for a while, by which time the tracker has caught up.
//! - The queue is bounded: a tracker that falls behind holds the reader back (and so the
//!   program), never grows memory.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};

use tether_protocol::sync::lock;

use super::screen::Screen;
use super::terminal::Query;

/// Output chunks (one PTY read each) the tracker may be behind by.
const TRACKER_QUEUE_CHUNKS: usize = 16;

enum Job {
    Output(Vec<u8>),
    /// Answer this query on the screen as it is now, through `answer`.
    Query(Query),
}

pub struct Tracker {
    jobs: SyncSender<Job>,
    screen: Arc<Mutex<Screen>>,
    /// A resize to apply before the next job (rows << 16 | cols; 0: none).
    resize: Arc<AtomicU32>,
}

impl Tracker {
    /// Start the tracker for a `rows` × `cols` screen; query answers go to `answer`.
    pub fn start(name: &str, rows: u16, cols: u16, answer: impl Fn(&[u8]) + Send + 'static) -> Result<Tracker, String> {
        let screen = Arc::new(Mutex::new(Screen::new(rows, cols)));
        let resize = Arc::new(AtomicU32::new(0));
        let (jobs, inbox) = sync_channel::<Job>(TRACKER_QUEUE_CHUNKS);
        let (kept, pending) = (screen.clone(), resize.clone());
        std::thread::Builder::new()
            .name(format!("screen-{name}"))
            .spawn(move || {
                // Ends when the session drops its tracker.
                while let Ok(job) = inbox.recv() {
                    let mut screen = lock(&kept);
                    let size = pending.swap(0, Ordering::Relaxed);
                    if size != 0 {
                        screen.resize((size >> 16) as u16, (size & 0xffff) as u16);
                    }
                    match job {
                        Job::Output(bytes) => screen.process(&bytes),
                        Job::Query(query) => {
                            let reply = query.reply(&screen);
                            drop(screen);
                            answer(&reply);
                        }
                    }
                }
            })
            .map_err(|e| format!("cannot start the screen tracker: {e}"))?;
        Ok(Tracker { jobs, screen, resize })
    }

    /// Output, in order (waits while the tracker is `TRACKER_QUEUE_CHUNKS` behind).
    pub fn output(&self, bytes: Vec<u8>) {
        let _ = self.jobs.send(Job::Output(bytes));
    }

    /// A query to answer once the output before it is on the screen.
    pub fn query(&self, query: Query) {
        let _ = self.jobs.send(Job::Query(query));
    }

    /// The terminal's new size, applied before the next output.
    pub fn resize(&self, rows: u16, cols: u16) {
        self.resize.store(u32::from(rows.max(1)) << 16 | u32::from(cols.max(1)), Ordering::Relaxed);
    }

    /// Read the screen as far as the tracker has got.
    pub fn with_screen<T>(&self, read: impl FnOnce(&Screen) -> T) -> T {
        read(&lock(&self.screen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_answered_on_the_screen_as_the_output_before_it_left_it() {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let tracker = Tracker::start("test", 24, 80, move |reply| drop(tx.send(reply.to_vec()))).expect("start");
        tracker.output(b"hello\r\nworld".to_vec());
        tracker.query(Query::CursorPosition { private: false });
        tracker.output(b"\r\n\r\nmore".to_vec());
        tracker.query(Query::CursorPosition { private: false });
        let first = rx.recv_timeout(std::time::Duration::from_secs(5)).expect("first answer");
        let second = rx.recv_timeout(std::time::Duration::from_secs(5)).expect("second answer");
        assert_eq!(first, b"\x1b[2;6R");
        assert_eq!(second, b"\x1b[4;5R");
        assert_eq!(tracker.with_screen(|s| s.cursor_line()), "more");
    }

    #[test]
    fn a_resize_applies_before_the_next_output() {
        let tracker = Tracker::start("test", 24, 80, |_| {}).expect("start");
        tracker.resize(10, 20);
        tracker.output(b"\x1b[99;99H".to_vec()); // clamped to the new size
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while tracker.with_screen(|s| s.cursor_position()) != (9, 19) {
            assert!(
                std::time::Instant::now() < deadline,
                "never resized: {:?}",
                tracker.with_screen(|s| s.cursor_position())
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}
