//! The spans of instances and activities (see `crate::traces` for the
//! ids and the export). Nothing here runs unless export is configured,
//! except [`Shared::activity_traceparent`], which activities' outbound
//! requests carry either way.

use std::sync::Arc;

use super::engine::Shared;
use crate::time::now_ms;
use crate::traces::{SAMPLED, SpanOf, SpanRecord, TraceContext, derived_trace_id, span_id};
use perdure_records::{InstanceId, RuntimeStatus, TaskOutcome, WorkItem};
use perdure_storage::StorageError;

/// Ancestors followed to find a root instance at most.
const MAX_DEPTH: usize = 32;

/// Where an instance generation's root span sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TraceRoot {
    pub(crate) trace_id: [u8; 16],
    /// The caller's trace flags, or sampled for a trace this host began.
    pub(crate) flags: u8,
    /// True if the trace came with the request that started the root.
    pub(crate) propagated: bool,
    pub(crate) span_id: [u8; 8],
    /// The span that started it: the request's (from its `traceparent`)
    /// or, for a sub-orchestration, its parent's task.
    pub(crate) parent: Option<[u8; 8]>,
}

/// How an instance generation ended, for its trace.
pub(crate) struct GenerationEnd {
    pub(crate) id: InstanceId,
    pub(crate) generation: u64,
    pub(crate) name: String,
    pub(crate) started_ms: i64,
    pub(crate) status: RuntimeStatus,
    /// Why it failed or was terminated.
    pub(crate) error: Option<String>,
    /// The generation's history, read before it ended, when ending it
    /// replaced its journal (continue-as-new); else it is read now.
    pub(crate) history: Option<perdure_records::History>,
}

impl Shared {
    /// The trace of `id`'s `generation`: its root's trace id (from the
    /// root's `traceparent`, or derived), and its parent span.
    pub(crate) async fn trace_root(
        &self,
        id: &InstanceId,
        generation: u64,
    ) -> Result<TraceRoot, StorageError> {
        let own = span_id(SpanOf::Instance {
            instance: id.as_str(),
            generation,
        });
        // Up to the root: (instance, generation, the task of its parent
        // that started it). Ancestors count in their current generation.
        let mut chain: Vec<(InstanceId, u64, Option<u64>)> = Vec::new();
        let mut next = Some(id.clone());
        let mut given_generation = Some(generation);
        let mut root_origin = None;
        while let Some(instance) = next.take() {
            let origin = self
                .storage()
                .trace_origin(&instance)
                .await?
                .unwrap_or_default();
            let generation = given_generation.take().unwrap_or(origin.generation);
            chain.push((instance, generation, origin.parent_task));
            match origin
                .parent_id
                .as_deref()
                .and_then(|p| InstanceId::parse(p).ok())
            {
                Some(parent) if chain.len() < MAX_DEPTH => next = Some(parent),
                _ => root_origin = Some(origin),
            }
        }
        let (root, root_generation) = chain
            .last()
            .map_or((id.clone(), generation), |(i, g, _)| (i.clone(), *g));
        let root_origin = root_origin.unwrap_or_default();
        // The caller's trace holds for the generation it started.
        let context = root_origin
            .traceparent
            .as_ref()
            .filter(|(traced, _)| *traced == root_generation)
            .and_then(|(_, header)| TraceContext::parse(header));
        let trace_id = context.map_or_else(
            || derived_trace_id(root.as_str(), root_origin.created_ms, root_generation),
            |c| c.trace_id,
        );
        let parent = match chain.get(1) {
            Some((parent, parent_generation, _)) => Some(match chain[0].2 {
                Some(seq) => span_id(SpanOf::Task {
                    instance: parent.as_str(),
                    generation: *parent_generation,
                    seq,
                }),
                None => span_id(SpanOf::Instance {
                    instance: parent.as_str(),
                    generation: *parent_generation,
                }),
            }),
            None => context.map(|c| c.span_id),
        };
        Ok(TraceRoot {
            trace_id,
            flags: context.map_or(SAMPLED, |c| c.flags),
            propagated: context.is_some(),
            span_id: own,
            parent,
        })
    }

    /// The `traceparent` an activity's outbound requests carry: its
    /// execution span in its instance's trace, when there is a trace to
    /// carry on (this host exports spans, or the instance was started in a
    /// caller's trace); `None` otherwise.
    pub(crate) async fn activity_traceparent(
        &self,
        instance: &InstanceId,
        generation: u64,
        seq: u64,
        attempt: u32,
    ) -> Result<Option<String>, StorageError> {
        let root = self.trace_root(instance, generation).await?;
        if !self.traces().enabled() && !root.propagated {
            return Ok(None);
        }
        let span = span_id(SpanOf::Attempt {
            instance: instance.as_str(),
            generation,
            seq,
            attempt,
        });
        Ok(Some(
            TraceContext {
                trace_id: root.trace_id,
                span_id: span,
                flags: root.flags,
            }
            .header(),
        ))
    }

    /// The trace root of a generation whose spans are exported: `None` if
    /// it cannot be read, or the caller asked for its trace not to be
    /// recorded (not sampled).
    async fn recorded_root(&self, id: &InstanceId, generation: u64) -> Option<TraceRoot> {
        let root = self.trace_root(id, generation).await.ok()?;
        (root.flags & SAMPLED != 0).then_some(root)
    }

    /// Exports the span of one activity execution (`started_ms` to now).
    pub(crate) fn trace_activity(
        self: &Arc<Self>,
        item: &WorkItem,
        started_ms: i64,
        outcome: &TaskOutcome,
    ) {
        if !self.traces().enabled() {
            return;
        }
        let shared = self.clone();
        let item = item.clone();
        let error = outcome.as_ref().err().map(|e| e.message.clone());
        let ended_ms = now_ms();
        tokio::spawn(async move {
            let Some(root) = shared
                .recorded_root(&item.instance_id, item.generation)
                .await
            else {
                return;
            };
            let instance = item.instance_id.as_str();
            shared.traces().record(SpanRecord {
                trace_id: root.trace_id,
                span_id: span_id(SpanOf::Attempt {
                    instance,
                    generation: item.generation,
                    seq: item.task_id,
                    attempt: item.attempt,
                }),
                parent: Some(span_id(SpanOf::Task {
                    instance,
                    generation: item.generation,
                    seq: item.task_id,
                })),
                name: format!("run {}", item.name),
                start_ms: started_ms,
                end_ms: ended_ms,
                error,
                attributes: vec![
                    ("perdure.instance_id", instance.to_owned()),
                    ("perdure.activity", item.name.clone()),
                    ("perdure.task_id", item.task_id.to_string()),
                    ("perdure.attempt", item.attempt.to_string()),
                ],
            });
        });
    }

    /// Exports an instance generation that ended: its root span and, from
    /// its history, one span per task it scheduled.
    pub(crate) fn trace_instance(self: &Arc<Self>, end: GenerationEnd) {
        if !self.traces().enabled() {
            return;
        }
        let GenerationEnd {
            id,
            generation,
            name,
            started_ms,
            status,
            error,
            history,
        } = end;
        let shared = self.clone();
        let ended_ms = now_ms();
        tokio::spawn(async move {
            let Some(root) = shared.recorded_root(&id, generation).await else {
                return;
            };
            let instance = id.as_str();
            let traces = shared.traces();
            // The history of this generation, unless a newer one replaced it.
            let history = match history {
                Some(history) => Some(history),
                None => shared.storage().history(&id).await.ok().flatten(),
            };
            let bars = match history.filter(|h| h.record.generation == generation) {
                Some(history) => {
                    tokio::task::spawn_blocking(move || super::timeline::timeline(&history).bars)
                        .await
                        .unwrap_or_default()
                }
                None => Vec::new(),
            };
            for bar in bars {
                traces.record(SpanRecord {
                    trace_id: root.trace_id,
                    span_id: span_id(SpanOf::Task {
                        instance,
                        generation,
                        seq: bar.seq,
                    }),
                    parent: Some(root.span_id),
                    name: format!("{} {}", bar.kind, bar.name),
                    start_ms: bar.scheduled_ms,
                    end_ms: bar.ended_ms.unwrap_or(ended_ms),
                    error: (bar.outcome == "failed")
                        .then(|| format!("{} {} failed", bar.kind, bar.name)),
                    attributes: vec![
                        ("perdure.instance_id", instance.to_owned()),
                        ("perdure.task_id", bar.seq.to_string()),
                        ("perdure.task_kind", bar.kind.to_owned()),
                        ("perdure.outcome", bar.outcome.to_owned()),
                    ],
                });
            }
            traces.record(SpanRecord {
                trace_id: root.trace_id,
                span_id: root.span_id,
                parent: root.parent,
                name: format!("orchestration {name}"),
                start_ms: started_ms,
                end_ms: ended_ms,
                error,
                attributes: vec![
                    ("perdure.instance_id", instance.to_owned()),
                    ("perdure.orchestrator", name.clone()),
                    ("perdure.generation", generation.to_string()),
                    ("perdure.status", status.as_str().to_owned()),
                ],
            });
        });
    }
}
