//! Guest stdout and stderr, captured line by line into the host log with
//! the app and function that wrote them.
//!
//! Invariant: one invocation logs at most `budget` bytes; past that, output
//! is dropped (the guest's writes still succeed, so a chatty guest is not
//! failed for it) and a single notice says so.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;

use super::InstanceLog;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Which function a line came from.
#[derive(Debug, Clone)]
pub(crate) struct LogTag {
    pub(crate) app: Arc<str>,
    pub(crate) function: Arc<str>,
}

/// A guest output stream (stdout or stderr) that writes to `tracing`.
#[derive(Clone)]
pub(crate) struct GuestOutput {
    tag: LogTag,
    stream: &'static str,
    /// Bytes this invocation may still log, shared by stdout and stderr.
    budget: Arc<AtomicUsize>,
    /// The instance's log, for orchestrators and activities.
    instance_log: Option<Arc<InstanceLog>>,
}

impl GuestOutput {
    pub(crate) fn new(
        tag: LogTag,
        stream: &'static str,
        budget: Arc<AtomicUsize>,
        instance_log: Option<Arc<InstanceLog>>,
    ) -> Self {
        Self {
            tag,
            stream,
            budget,
            instance_log,
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter::new(self.clone()))
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineWriter::new(self.clone()))
    }
}

/// Longest line kept whole; longer lines are split.
const MAX_LINE: usize = 8 * 1024;

struct LineWriter {
    out: GuestOutput,
    pending: Vec<u8>,
}

impl LineWriter {
    fn new(out: GuestOutput) -> Self {
        Self {
            out,
            pending: Vec::new(),
        }
    }

    fn accept(&mut self, bytes: &[u8]) {
        if self
            .out
            .instance_log
            .as_ref()
            .is_some_and(|log| log.replaying())
        {
            // A replaying orchestrator printed this on an earlier run; it
            // costs no budget.
            return;
        }
        let granted = take_budget(&self.out.budget, bytes.len());
        // Past the budget: note it once (the swap marks the budget as
        // exhausted-and-noted), then drop silently.
        if granted < bytes.len()
            && self.out.budget.swap(usize::MAX, Ordering::Relaxed) != usize::MAX
        {
            tracing::warn!(
                target: "guest",
                app = &*self.out.tag.app,
                function = &*self.out.tag.function,
                "guest output over the per-invocation limit; the rest is dropped"
            );
        }
        self.pending.extend_from_slice(&bytes[..granted]);
        while let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            self.emit(&line[..line.len() - 1]);
        }
        if self.pending.len() >= MAX_LINE {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
    }

    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        if let Some(log) = &self.out.instance_log {
            // A replaying orchestrator printed this line on an earlier run.
            if log.replaying() {
                return;
            }
            log.push(self.out.stream, text);
        }
        tracing::info!(
            target: "guest",
            app = &*self.out.tag.app,
            function = &*self.out.tag.function,
            stream = self.out.stream,
            "{text}"
        );
    }
}

/// Takes up to `want` bytes from the budget; `usize::MAX` marks an
/// exhausted budget whose notice was already logged.
fn take_budget(budget: &AtomicUsize, want: usize) -> usize {
    let mut granted = 0;
    let _ = budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
        if left == usize::MAX {
            granted = 0;
            return None;
        }
        granted = left.min(want);
        Some(left - granted)
    });
    granted
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.accept(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.accept(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
