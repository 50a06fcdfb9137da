//! Traces: one per orchestration instance (per generation), exported by
//! OTLP/HTTP (protobuf) when `--otlp-endpoint` is given; without it
//! nothing is exported and no connection is made.
//!
//! Invariants:
//! - Span ids are derived from what the journal names (instance id,
//!   generation, task seq, attempt), so a span can name its parent before
//!   the parent is exported, and a replay or a restart derives the same
//!   ids: an instance's root span, one span per task it scheduled
//!   (activity, timer, event wait, sub-orchestration, entity call; built
//!   from the same history as the dashboard's timeline), one span per
//!   activity execution attempt under its task, and a sub-orchestration's
//!   root span under its parent's task.
//! - The trace id is the one of the `traceparent` header of the request
//!   that started the root instance (W3C trace context), else derived from
//!   the root instance's id and generation. Children share their root's.
//! - Activities' outbound HTTP requests carry `traceparent` naming their
//!   execution span, so the services they call join the trace.
//! - Exporting never blocks the engine: spans go through a bounded queue
//!   (dropped, and counted in the log, when the collector cannot keep up)
//!   to one task that sends them in batches.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prost::Message as _;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

/// A W3C trace context: the trace and the span that is the parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The trace flags (bit 0: sampled), kept as the caller sent them.
    pub flags: u8,
}

impl TraceContext {
    /// Parses a `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`);
    /// `None` for anything else, or for all-zero ids (invalid by the spec).
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2 || version == "ff" || flags.len() != 2 {
            return None;
        }
        // Version 00 has exactly four fields; later ones may add more.
        if version == "00" && parts.next().is_some() {
            return None;
        }
        hex::decode(version).ok()?;
        let mut flag_byte = [0u8; 1];
        hex::decode_to_slice(flags, &mut flag_byte).ok()?;
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        hex::decode_to_slice(trace, &mut trace_id).ok()?;
        hex::decode_to_slice(span, &mut span_id).ok()?;
        let lower = |s: &str| s.chars().all(|c| !c.is_ascii_uppercase());
        if trace_id == [0; 16] || span_id == [0; 8] || !lower(trace) || !lower(span) {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            // Only the sampled flag is defined for version 00; unknown
            // bits are not passed on.
            flags: flag_byte[0] & SAMPLED,
        })
    }

    /// The `traceparent` header naming this span.
    pub fn header(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex::encode(self.trace_id),
            hex::encode(self.span_id),
            self.flags
        )
    }
}

fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    hash.finalize().into()
}

/// The flags of a trace this host starts: sampled (it exports them all).
pub const SAMPLED: u8 = 1;

/// A trace id derived from a root instance's id, its creation time (so
/// that two hosts' instances with one id get two traces) and generation.
pub fn derived_trace_id(instance: &str, created_ms: i64, generation: u64) -> [u8; 16] {
    let hash = digest(&[
        b"perdure-trace",
        instance.as_bytes(),
        &created_ms.to_le_bytes(),
        &generation.to_le_bytes(),
    ]);
    let mut id = [0u8; 16];
    id.copy_from_slice(&hash[..16]);
    id
}

/// What a span id is derived from.
#[derive(Debug, Clone, Copy)]
pub enum SpanOf<'a> {
    /// An instance's generation.
    Instance { instance: &'a str, generation: u64 },
    /// A task the instance scheduled (its journal seq).
    Task {
        instance: &'a str,
        generation: u64,
        seq: u64,
    },
    /// One execution attempt of an activity task.
    Attempt {
        instance: &'a str,
        generation: u64,
        seq: u64,
        attempt: u32,
    },
}

/// The span id of `of`; never all zeros.
pub fn span_id(of: SpanOf<'_>) -> [u8; 8] {
    let hash = match of {
        SpanOf::Instance {
            instance,
            generation,
        } => digest(&[b"instance", instance.as_bytes(), &generation.to_le_bytes()]),
        SpanOf::Task {
            instance,
            generation,
            seq,
        } => digest(&[
            b"task",
            instance.as_bytes(),
            &generation.to_le_bytes(),
            &seq.to_le_bytes(),
        ]),
        SpanOf::Attempt {
            instance,
            generation,
            seq,
            attempt,
        } => digest(&[
            b"attempt",
            instance.as_bytes(),
            &generation.to_le_bytes(),
            &seq.to_le_bytes(),
            &attempt.to_le_bytes(),
        ]),
    };
    let mut id = [0u8; 8];
    id.copy_from_slice(&hash[..8]);
    if id == [0; 8] {
        id[7] = 1;
    }
    id
}

/// A finished span, ready to export.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub name: String,
    pub start_ms: i64,
    pub end_ms: i64,
    /// `Some(message)` for a span that failed.
    pub error: Option<String>,
    pub attributes: Vec<(&'static str, String)>,
}

/// Spans queued for the exporter at most; more are dropped.
const QUEUE: usize = 16_384;
/// Spans per export request at most.
const BATCH: usize = 512;
/// How long a span waits for its batch to fill.
const LINGER: Duration = Duration::from_millis(500);
/// Time one export request may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where spans go: nowhere (the default), or an OTLP/HTTP collector.
#[derive(Debug, Clone, Default)]
pub struct Traces {
    queue: Option<mpsc::Sender<SpanRecord>>,
}

impl Traces {
    /// No export.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Exports to the OTLP/HTTP collector at `endpoint` (e.g.
    /// `http://127.0.0.1:4318`; spans are POSTed to `/v1/traces`) through
    /// `client` (http or https). Must be called inside the tokio runtime.
    pub fn otlp(
        endpoint: &str,
        client: Arc<crate::sandbox::OutboundClient>,
    ) -> Result<Self, TraceSetupError> {
        let base = endpoint.trim_end_matches('/');
        let url: http::Uri = format!("{base}/v1/traces")
            .parse()
            .map_err(|e| TraceSetupError(format!("{endpoint:?} is not a URL: {e}")))?;
        if !matches!(url.scheme_str(), Some("http" | "https")) {
            return Err(TraceSetupError(format!(
                "{endpoint:?}: the OTLP endpoint must be an http:// or https:// URL"
            )));
        }
        let (queue, spans) = mpsc::channel(QUEUE);
        tokio::spawn(export(spans, url, client));
        Ok(Self { queue: Some(queue) })
    }

    pub fn enabled(&self) -> bool {
        self.queue.is_some()
    }

    /// Queues a finished span; drops it if the exporter is behind.
    pub fn record(&self, span: SpanRecord) {
        if let Some(queue) = &self.queue
            && queue.try_send(span).is_err()
        {
            tracing::debug!("trace export queue full; a span was dropped");
        }
    }
}

/// The OTLP endpoint could not be used.
#[derive(Debug, thiserror::Error)]
#[error("cannot export traces: {0}")]
pub struct TraceSetupError(String);

fn nanos(ms: i64) -> u64 {
    (ms.max(0) as u64).saturating_mul(1_000_000)
}

fn text(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..KeyValue::default()
    }
}

fn otlp_span(record: SpanRecord) -> Span {
    let status = match record.error {
        Some(message) => Status {
            message,
            code: status::StatusCode::Error as i32,
        },
        None => Status {
            message: String::new(),
            code: status::StatusCode::Ok as i32,
        },
    };
    Span {
        trace_id: record.trace_id.to_vec(),
        span_id: record.span_id.to_vec(),
        parent_span_id: record.parent.map(|p| p.to_vec()).unwrap_or_default(),
        name: record.name,
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: nanos(record.start_ms),
        end_time_unix_nano: nanos(record.end_ms.max(record.start_ms)),
        attributes: record
            .attributes
            .into_iter()
            .map(|(k, v)| text(k, v))
            .collect(),
        status: Some(status),
        ..Span::default()
    }
}

/// One export request's body: the spans of a batch under this host's
/// resource.
pub fn encode(batch: Vec<SpanRecord>) -> Vec<u8> {
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    text("service.name", "perdure".to_owned()),
                    text("service.version", env!("CARGO_PKG_VERSION").to_owned()),
                ],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "perdure.durable".to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..InstrumentationScope::default()
                }),
                spans: batch.into_iter().map(otlp_span).collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    request.encode_to_vec()
}

async fn export(
    mut spans: mpsc::Receiver<SpanRecord>,
    url: http::Uri,
    client: Arc<crate::sandbox::OutboundClient>,
) {
    while let Some(first) = spans.recv().await {
        let mut batch = vec![first];
        let linger = tokio::time::sleep(LINGER);
        tokio::pin!(linger);
        while batch.len() < BATCH {
            tokio::select! {
                next = spans.recv() => match next {
                    Some(span) => batch.push(span),
                    None => break,
                },
                _ = &mut linger => break,
            }
        }
        let count = batch.len();
        let request = http::Request::post(url.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::from(encode(batch))));
        let Ok(request) = request else { continue };
        match tokio::time::timeout(EXPORT_TIMEOUT, client.request(request)).await {
            Ok(Ok(response)) if response.status().is_success() => {}
            Ok(Ok(response)) => {
                tracing::warn!(spans = count, status = %response.status(), "the OTLP collector refused spans")
            }
            Ok(Err(e)) => tracing::warn!(spans = count, "cannot export spans to {url}: {e}"),
            Err(_) => tracing::warn!(spans = count, "exporting spans to {url} timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_rejects_what_the_spec_does() {
        for header in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        ] {
            let context = TraceContext::parse(header);
            assert_eq!(context.map(|c| c.header()).as_deref(), Some(header));
        }
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn span_ids_are_stable_and_distinct() {
        let task = |seq| SpanOf::Task {
            instance: "i",
            generation: 0,
            seq,
        };
        assert_eq!(span_id(task(1)), span_id(task(1)));
        assert_ne!(span_id(task(1)), span_id(task(2)));
        assert_ne!(
            span_id(SpanOf::Instance {
                instance: "i",
                generation: 0
            }),
            span_id(SpanOf::Instance {
                instance: "i",
                generation: 1
            })
        );
        assert_ne!(derived_trace_id("i", 5, 0), derived_trace_id("i", 5, 1));
        assert_ne!(derived_trace_id("i", 5, 0), derived_trace_id("i", 6, 0));
    }
}
