//! `start --wait`: polling an instance's status until it finishes, with a
//! progress line on stderr while a person watches (and nothing otherwise).

use std::io::Write as _;
use std::time::{Duration, Instant};

use http::Method;
use serde_json::Value;

use super::commands::Context;
use super::{Answer, RemoteError};
use perdure_records::RuntimeStatus;

/// The first pause between polls: a short instance is seen to end soon
/// after it does. Each pause doubles, up to [`MAX_POLL`], so a long one
/// costs the host one read a second.
const FIRST_POLL: Duration = Duration::from_millis(50);
const MAX_POLL: Duration = Duration::from_secs(1);

/// How often the progress line is redrawn.
const FRAME: Duration = Duration::from_millis(100);

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// How a wait ended. Each carries the last status answer read.
pub(super) enum Waited {
    Finished(Answer),
    /// `timeout` passed first; the instance is still running.
    TimedOut(Answer),
    /// Ctrl-C; the instance is still running.
    Interrupted,
}

/// The runtime status in a status document.
pub(super) fn status_of(view: &Value) -> Option<RuntimeStatus> {
    view["runtimeStatus"]
        .as_str()
        .and_then(RuntimeStatus::parse)
}

/// Reads `status_path` (instance `id`'s status route) until the instance
/// has finished, `timeout` has passed, or the user presses Ctrl-C.
pub(super) async fn until_finished(
    ctx: &Context,
    id: &str,
    status_path: &str,
    timeout: Option<Duration>,
) -> Result<Waited, RemoteError> {
    tokio::select! {
        waited = poll(ctx, id, status_path, timeout) => waited,
        // If the handler cannot be installed, Ctrl-C keeps its default.
        Ok(()) = tokio::signal::ctrl_c() => Ok(Waited::Interrupted),
    }
}

async fn poll(
    ctx: &Context,
    id: &str,
    status_path: &str,
    timeout: Option<Duration>,
) -> Result<Waited, RemoteError> {
    let started = Instant::now();
    let deadline = timeout.map(|t| started + t);
    let mut progress = Progress::new(ctx.interactive, id);
    let mut pause = FIRST_POLL;
    loop {
        let answer = ctx
            .remote
            .send(Method::GET, status_path, None, None)
            .await?;
        let status = status_of(&answer.json()?);
        if status.is_some_and(RuntimeStatus::is_finished) {
            return Ok(Waited::Finished(answer));
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Ok(Waited::TimedOut(answer));
        }
        let next_poll = deadline.map_or(now + pause, |d| (now + pause).min(d));
        loop {
            progress.draw(status, started.elapsed());
            let frame_end = (Instant::now() + FRAME).min(next_poll);
            tokio::time::sleep_until(frame_end.into()).await;
            if Instant::now() >= next_poll {
                break;
            }
        }
        pause = (pause * 2).min(MAX_POLL);
    }
}

/// The `⠋ waiting for ID: Running, 3.2s` line, redrawn in place; cleared
/// when dropped, however the wait ends.
struct Progress<'a> {
    enabled: bool,
    id: &'a str,
    frame: usize,
    drawn: bool,
}

impl<'a> Progress<'a> {
    fn new(enabled: bool, id: &'a str) -> Self {
        Self {
            enabled,
            id,
            frame: 0,
            drawn: false,
        }
    }

    fn draw(&mut self, status: Option<RuntimeStatus>, elapsed: Duration) {
        if !self.enabled {
            return;
        }
        let spinner = SPINNER[self.frame % SPINNER.len()];
        self.frame += 1;
        let status = status.map_or("unknown status", RuntimeStatus::as_str);
        let mut err = std::io::stderr().lock();
        // `\r` back to the line's start, `ESC [K` clears what is left.
        let _ = write!(
            err,
            "\r{spinner} waiting for {}: {status}, {:.1}s\x1b[K",
            super::table::clean(self.id),
            elapsed.as_secs_f64()
        );
        let _ = err.flush();
        self.drawn = true;
    }
}

impl Drop for Progress<'_> {
    fn drop(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
    }
}
