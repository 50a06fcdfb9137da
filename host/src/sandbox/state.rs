//! The data of one invocation's store: its WASI context (deny-by-default),
//! its memory cap, its deadline, and who is running.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
};

use super::guest_log::{GuestOutput, LogTag};
use super::replay_random::ReplayRandom;
use crate::model::FunctionKind;

/// Caps linear memory and table growth of one store. Growing past the cap
/// traps and records why, so the failure can be reported as a memory limit
/// rather than a generic trap.
pub(crate) struct MemoryCap {
    pub(crate) max_bytes: usize,
    pub(crate) exceeded: bool,
    /// The size of the largest linear memory the store has had (creation
    /// counts as growth from zero): it bounds the pages the store's
    /// teardown has to return to the kernel.
    pub(crate) largest_bytes: usize,
}

/// Table elements are small; this bound only stops a guest from growing a
/// table without end.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.exceeded = true;
            return Err(wasmtime::Error::msg(format!(
                "memory limit of {} MiB exceeded",
                self.max_bytes >> 20
            )));
        }
        self.largest_bytes = self.largest_bytes.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// Who is running in a store: the host API checks it, so that e.g. an
/// orchestration call from an HTTP function traps with a clear message.
#[derive(Debug, Clone)]
pub struct Caller {
    pub app: Arc<str>,
    pub function: Arc<str>,
    pub kind: FunctionKind,
}

/// What an activity knows about the call that scheduled it.
#[derive(Debug, Clone)]
pub struct ActivityInfo {
    pub name: String,
    pub instance_id: String,
    /// The seq of the call that scheduled it, and its instance's
    /// generation then (for its trace context).
    pub task_id: u64,
    pub generation: u64,
    pub idempotency_key: String,
    pub attempt: u32,
    /// Its app's configuration (where it may send HTTP requests).
    pub config: Arc<crate::config::AppConfig>,
    /// The host's outbound HTTP client.
    pub outbound: Arc<super::outbound::OutboundClient>,
    /// What this run logs, stored with its outcome.
    pub log: Arc<super::InstanceLog>,
}

/// What the sandbox needs of an orchestrator's session. The durable
/// engine's session is the one implementation; its host calls get it back
/// through [`Self::as_any_mut`], so the sandbox does not depend on the
/// engine.
pub(crate) trait OrchestratorSession: std::any::Any + Send {
    fn instance_id(&self) -> &str;
    /// The instance's generation (it seeds the guest's randomness).
    fn generation(&self) -> u64;
    /// Where the guest's output lines go.
    fn log(&self) -> &Arc<super::InstanceLog>;
    /// The orchestration's clock, in ms: the guest's wall and monotonic
    /// clocks read it, so replays see the same time.
    fn clock(&self) -> Arc<AtomicI64>;
    /// True once a host call stopped the guest on purpose.
    fn stopped_by_host(&self) -> bool;
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send>;
}

/// A loaded orchestrator: its app, version digest and bytes.
pub(crate) struct LoadedOrchestrator {
    pub(crate) app: String,
    pub(crate) digest: String,
    pub(crate) bytes: Arc<[u8]>,
}

/// What the sandbox asks of the durable engine, which implements it. The
/// `client` interface's host calls (the engine's own) get the engine back
/// through [`Self::into_any`], so the sandbox does not depend on it.
pub(crate) trait DurableClient: Send + Sync + 'static {
    /// The loaded orchestrator `name`.
    fn loaded_orchestrator(&self, name: &str) -> Option<LoadedOrchestrator>;
    /// The `traceparent` an activity's outbound requests carry.
    fn activity_traceparent<'a>(
        &'a self,
        info: &'a ActivityInfo,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send + 'a>>;
    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync>;
}

/// What the durable interfaces answer for this invocation.
pub(crate) enum Role {
    /// HTTP functions and `describe`.
    Plain,
    Orchestrator(Box<dyn OrchestratorSession>),
    Activity(ActivityInfo),
    /// An entity operation, with what it sent so far.
    Entity(Vec<perdure_records::EntitySend>),
}

/// Computing this long without waiting makes an invocation long-running:
/// from then on it runs only while it holds one of the sandbox's long
/// lanes, which long-running invocations take in turns, one epoch tick at a
/// time. Short invocations never queue for a lane, so they keep their
/// latency next to guests that compute without end.
pub(crate) const LONG_RUNNING: Duration = Duration::from_millis(10);

/// Longest wait for a long lane's turn (see [`Lane::next_turn`]).
const LANE_WAIT: Duration = Duration::from_millis(50);

/// An invocation's claim on the long lanes (see [`LONG_RUNNING`]).
pub(crate) struct Lane {
    lanes: Arc<tokio::sync::Semaphore>,
    /// Made at the first turn: short invocations, most of them, never
    /// allocate it.
    held: std::sync::OnceLock<Arc<std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>>>,
}

impl Lane {
    pub(crate) fn new(lanes: Arc<tokio::sync::Semaphore>) -> Self {
        Self {
            lanes,
            held: std::sync::OnceLock::new(),
        }
    }

    /// Gives the lane up (if held) and returns the wait for the next turn;
    /// the semaphore is fair, so the invocations waiting go first.
    pub(crate) fn next_turn(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.release();
        let (lanes, held) = (
            self.lanes.clone(),
            self.held.get_or_init(Arc::default).clone(),
        );
        async move {
            // A holder stuck in a host call that waits without saying so
            // (a WASI sleep) keeps its lane; the others wait for a turn at
            // most this long, then run on without one.
            if let Ok(Ok(permit)) = tokio::time::timeout(LANE_WAIT, lanes.acquire_owned()).await {
                *held.lock().unwrap_or_else(|p| p.into_inner()) = Some(permit);
            }
            // Woken by the previous holder, the task would run at once,
            // ahead of the worker's queue (tokio's LIFO slot); behind it,
            // the short requests queued meanwhile go first.
            tokio::task::yield_now().await;
        }
    }

    pub(crate) fn release(&self) {
        if let Some(held) = self.held.get() {
            let permit = held.lock().unwrap_or_else(|p| p.into_inner()).take();
            drop(permit);
        }
    }
}

/// The store data of one invocation.
pub(crate) struct InvocationState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) memory: MemoryCap,
    pub(crate) caller: Caller,
    pub(crate) role: Role,
    /// The durable engine, for the `client` interface.
    /// The durable engine, for the `client` interface.
    pub(crate) client: Option<Arc<dyn DurableClient>>,
    /// Wall-clock limit of guest execution; for orchestrators it restarts
    /// whenever a blocking host call returns.
    pub(crate) time_limit: Duration,
    pub(crate) deadline: Instant,
    pub(crate) timed_out: bool,
    /// Since when the guest has computed without waiting.
    pub(crate) computing_since: Instant,
    /// When the current wait began (see [`Self::waiting`]).
    waiting_since: Option<Instant>,
    pub(crate) lane: Lane,
    /// Charges the time this invocation computes to its app.
    pub(crate) meter: super::fair_share::Meter,

    /// Where an orchestrator's or activity's log lines are kept for its
    /// instance (`None` for HTTP functions and entities).
    pub(crate) instance_log: Option<Arc<super::InstanceLog>>,
    /// The `traceparent` of the HTTP request an HTTP function serves:
    /// instances it starts join that trace.
    pub(crate) traceparent: Option<String>,
}

/// An orchestrator's wall clock: its journaled orchestration time.
struct OrchestrationClock(Arc<AtomicI64>);

impl OrchestrationClock {
    fn nanos(&self) -> u64 {
        (self.0.load(Ordering::Relaxed).max(0) as u64).saturating_mul(1_000_000)
    }
}

impl HostWallClock for OrchestrationClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos())
    }
}

impl HostMonotonicClock for OrchestrationClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }

    fn now(&self) -> u64 {
        self.nanos()
    }
}

impl InvocationState {
    /// After a host call that may have blocked, the guest gets its full
    /// time limit again: the limit bounds computation, not waiting.
    pub(crate) fn resumed(&mut self) {
        let now = Instant::now();
        self.deadline = now + self.time_limit;
        self.done_waiting();
    }

    /// Before a host call that may wait (an await, an outbound request):
    /// a waiting guest holds no long lane.
    pub(crate) fn waiting(&mut self) {
        self.lane.release();
        self.meter.pause();
        self.waiting_since = Some(Instant::now());
    }

    /// After such a call: a real wait (a tick or more) starts the guest's
    /// computing afresh; a call answered at once only does not count
    /// toward it, so instant calls cannot keep a guest from being
    /// long-running.
    pub(crate) fn done_waiting(&mut self) {
        self.meter.resume();
        let Some(since) = self.waiting_since.take() else {
            return;
        };
        let waited = since.elapsed();
        if waited >= super::EPOCH_TICK {
            self.computing_since = Instant::now();
        } else {
            self.computing_since += waited;
        }
    }

    /// A deny-by-default WASI context: no preopened directories, no
    /// environment, no arguments, no sockets or name lookups; stdout and
    /// stderr go to the host log, within `log_budget` bytes.
    pub(crate) fn new(
        caller: Caller,
        role: Role,
        max_memory: usize,
        time_limit: Duration,
        log_budget: usize,
        lane: Lane,
        share: Arc<super::fair_share::FairShare>,
    ) -> Self {
        let meter = super::fair_share::Meter::start(share, caller.app.clone());
        let tag = LogTag {
            app: caller.app.clone(),
            function: caller.function.clone(),
        };
        let budget = Arc::new(AtomicUsize::new(log_budget));
        let instance_log = match &role {
            Role::Orchestrator(session) => Some(session.log().clone()),
            Role::Activity(info) => Some(info.log.clone()),
            Role::Plain | Role::Entity(_) => None,
        };
        let out =
            |stream| GuestOutput::new(tag.clone(), stream, budget.clone(), instance_log.clone());
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(out("stdout"))
            .stderr(out("stderr"))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if let Role::Orchestrator(session) = &role {
            // Replays must see the same time and the same random numbers
            // (HashMap seeds included) as the first run.
            let (instance, generation) = (session.instance_id(), session.generation());
            wasi.wall_clock(OrchestrationClock(session.clock()))
                .monotonic_clock(OrchestrationClock(session.clock()))
                .secure_random(ReplayRandom::secure(instance, generation))
                .insecure_random(ReplayRandom::insecure(instance, generation))
                .insecure_random_seed(ReplayRandom::seed(instance, generation));
        }
        Self {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            memory: MemoryCap {
                max_bytes: max_memory,
                exceeded: false,
                largest_bytes: 0,
            },
            caller,
            role,
            client: None,
            time_limit,
            deadline: Instant::now() + time_limit,
            timed_out: false,
            computing_since: Instant::now(),
            waiting_since: None,
            lane,
            meter,
            instance_log,
            traceparent: None,
        }
    }
}

impl WasiView for InvocationState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
