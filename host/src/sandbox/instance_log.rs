//! What an orchestrator or activity logs, kept for its instance: the lines
//! of the `logging` interface and of stdout/stderr, buffered in memory
//! until the engine stores them (with the orchestrator's episode, or with
//! the activity's outcome).
//!
//! Invariants: while an orchestrator replays, nothing is kept (nor written
//! to the host log): each line is stored once, by the run that first got
//! past it. The buffer is bounded: past [`MAX_LINES`] lines or
//! [`MAX_BYTES`] bytes until it is taken, lines are counted, not kept, and
//! one line says how many were dropped.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::time::now_ms;
use perdure_records::LogLine;

/// Lines kept between two takes (one episode, one activity run).
const MAX_LINES: usize = 1000;
/// Bytes of messages kept between two takes.
const MAX_BYTES: usize = 256 << 10;
/// Longest message kept; longer ones are cut (at a char boundary).
const MAX_MESSAGE: usize = 4096;

#[derive(Debug, Default)]
struct Buffer {
    lines: Vec<LogLine>,
    bytes: usize,
    dropped: u64,
}

/// The log buffer of one orchestrator session or activity run.
#[derive(Debug)]
pub struct InstanceLog {
    function: String,
    task_id: Option<u64>,
    attempt: Option<u32>,
    replaying: AtomicBool,
    buffer: Mutex<Buffer>,
}

impl InstanceLog {
    /// The log of an orchestrator (`task` `None`) or of one attempt of an
    /// activity.
    pub fn new(function: &str, task: Option<(u64, u32)>) -> Self {
        Self {
            function: function.to_owned(),
            task_id: task.map(|(id, _)| id),
            attempt: task.map(|(_, attempt)| attempt),
            replaying: AtomicBool::new(false),
            buffer: Mutex::new(Buffer::default()),
        }
    }

    pub fn set_replaying(&self, replaying: bool) {
        self.replaying.store(replaying, Ordering::Relaxed);
    }

    /// True while lines are suppressed (the orchestrator replays).
    pub fn replaying(&self) -> bool {
        self.replaying.load(Ordering::Relaxed)
    }

    /// Keeps a line unless replaying or over the bounds.
    pub fn push(&self, level: &'static str, message: &str) {
        if self.replaying() {
            return;
        }
        let mut message = message;
        if message.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message = &message[..cut];
        }
        let mut buffer = self.lock();
        if buffer.lines.len() >= MAX_LINES || buffer.bytes + message.len() > MAX_BYTES {
            buffer.dropped += 1;
            return;
        }
        buffer.bytes += message.len();
        let line = self.line(level, message.to_owned());
        buffer.lines.push(line);
    }

    /// The lines kept since the last take, with a note of any dropped.
    pub fn take(&self) -> Vec<LogLine> {
        let mut buffer = std::mem::take(&mut *self.lock());
        if buffer.dropped > 0 {
            let note = format!(
                "{} more lines were dropped (at most {MAX_LINES} lines or {} KiB are kept per run)",
                buffer.dropped,
                MAX_BYTES >> 10
            );
            buffer.lines.push(self.line("warn", note));
        }
        buffer.lines
    }

    fn line(&self, level: &'static str, message: String) -> LogLine {
        LogLine {
            at_ms: now_ms(),
            level,
            function: self.function.clone(),
            task_id: self.task_id,
            attempt: self.attempt,
            message,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_live_lines_within_bounds_and_none_while_replaying() {
        let log = InstanceLog::new("Orchestrator", None);
        log.set_replaying(true);
        log.push("info", "replayed");
        log.set_replaying(false);
        for i in 0..MAX_LINES + 5 {
            log.push("info", &format!("line {i}"));
        }
        log.push("info", &"é".repeat(MAX_MESSAGE));
        let lines = log.take();
        assert_eq!(lines.len(), MAX_LINES + 1);
        assert_eq!(lines[0].message, "line 0");
        assert!(
            lines[MAX_LINES]
                .message
                .starts_with("6 more lines were dropped")
        );
        assert!(log.take().is_empty());
        log.push("info", &"é".repeat(MAX_MESSAGE));
        let cut = log.take();
        assert!(cut[0].message.len() <= MAX_MESSAGE);
    }
}
