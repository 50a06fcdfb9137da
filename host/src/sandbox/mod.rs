//! The sandbox: one wasmtime engine for the host, and one fresh store per
//! invocation.
//!
//! Invariants:
//! - Guests get WASI p2 deny-by-default (see [`state::InvocationState`]).
//! - Every invocation runs under a memory cap and a wall-clock deadline; a
//!   trap, a stack overflow, a runaway loop or a memory blow-up fails that
//!   invocation only and is reported as an [`InvocationError`].
//! - Compilation is blocking work: callers run [`Sandbox::load`] off the
//!   async threads (`spawn_blocking`).
//! - Guest code yields to tokio every epoch tick, so a looping guest cannot
//!   starve other requests on its worker thread.

pub mod bindings;
mod code_cache;
mod entity;
mod fair_share;
mod guest_log;
mod imports;
mod instance_log;
mod outbound;
mod replay_random;
mod state;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolConcurrencyLimitError,
    PoolingAllocationConfig, Store, Trap, UpdateDeadline,
};

pub use code_cache::{CacheOutcome, CodeCache};
pub use entity::{BatchOutcome, OperationCall, OperationOutcome};
pub use instance_log::InstanceLog;
pub use outbound::{OutboundClient, OutboundSetupError};
pub use state::{ActivityInfo, Caller};

use bindings::{FunctionApp, FunctionAppPre, types};
pub(crate) use entity::entity_id;
pub(crate) use state::{
    DurableClient, InvocationState, LoadedOrchestrator, OrchestratorSession, Role,
};

use perdure_records::GuestError;

use crate::metrics::Metrics;
use crate::model::{AuthLevel, FunctionKind, RawFunction, RawTrigger};

/// How often the epoch advances; the granularity of deadlines and of the
/// yields that keep a busy guest from holding a worker thread.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Slots reset together with one round of `madvise` calls: one, so that
/// every store frees its own pages where it is torn down (see [`retire`]).
/// With a larger batch, wasmtime queues the regions on a shard shared with
/// other threads and the thread that queues the last one frees them all:
/// at 32, that could be an async worker freeing up to 32 memory hogs' 48
/// MiB each in one call (not timed; one hog's alone takes milliseconds).
/// Small stores (greet's) queue
/// nothing, as PAGEMAP_SCAN lets their dirty pages be reset with memset
/// (measured: 122 `madvise` calls in 62,000 greet invocations, batch 1).
const DECOMMIT_BATCH: usize = 1;

/// A store whose linear memory stayed within this is torn down where its
/// invocation ran; a larger one on the blocking pool (see [`retire`]).
/// Rust guests start at about 1.1 MiB (a 1 MiB stack and their data), and
/// a fresh page costs the guest a fault (about 1 µs) when first touched,
/// so past 2 MiB an invocation has spent far more than the thread hop
/// (tens of µs) that moving its teardown costs.
const INLINE_TEARDOWN_BYTES: usize = 2 << 20;

/// Bytes of each memory and table slot reset with `memset` rather than
/// returned to the kernel. With PAGEMAP_SCAN only dirtied pages count, so
/// this covers the heaps of typical functions while bounding the RSS an
/// idle slot keeps (256 KiB each: 250 MiB with all 1000 default slots warm).
const KEEP_RESIDENT: usize = 256 << 10;

/// Pool slots per sandbox slot (one per `max_instances`), sized for the
/// largest components in use: a CPython component (componentize-py)
/// instantiates 14 core modules with one memory and two tables; a
/// StarlingMonkey one 4, a Rust one 1 or 2. With fewer, a Python app could
/// not load below `--max-instances 4`, and at 20 only 5 of its instances
/// fitted. A core-instance slot is bookkeeping (its VMContext is allocated
/// on use), so the generous count costs no memory up front.
const CORE_INSTANCES_PER_SLOT: u32 = 16;
const MEMORIES_PER_SLOT: u32 = 2;
const TABLES_PER_SLOT: u32 = 4;

/// Limits applied to every invocation. They exist so that one bad guest
/// cannot take the host down with it.
#[derive(Debug, Clone)]
pub struct SandboxLimits {
    /// Linear memory one invocation may use.
    pub memory_bytes: usize,
    /// Wall-clock time one invocation may take, host calls included.
    pub timeout: Duration,
    /// Instances that may exist at once (pooling allocator slots); past
    /// this, invocations fail fast with [`InvocationError::Overloaded`].
    pub max_instances: u32,
    /// Bytes of stdout and stderr one invocation may write to the log.
    pub log_bytes: usize,
    /// Largest output one invocation may return: an HTTP response body,
    /// an activity's result, an orchestration's output or custom status.
    /// Larger ones fail the invocation ([`InvocationError::OutputTooLarge`])
    /// rather than reach the database or the client.
    pub max_output_bytes: usize,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 128 << 20,
            timeout: Duration::from_secs(30),
            max_instances: 1000,
            log_bytes: 64 * 1024,
            max_output_bytes: 16 << 20,
        }
    }
}

/// Why a component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a valid WebAssembly component: {0}")]
    Compile(String),
    #[error("the component does not fit the perdure:functions world: {0}")]
    World(String),
    #[error("describe() failed: {0}")]
    Describe(#[from] InvocationError),
}

/// Why one invocation failed. Each variant is one thing the caller can
/// tell its user; none of them affects other invocations.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InvocationError {
    #[error("the function trapped: {0}")]
    Trapped(String),
    #[error("the function ran longer than its limit of {0:?}")]
    Timeout(Duration),
    #[error("the function exceeded its memory limit of {} MiB", .0 >> 20)]
    MemoryExhausted(usize),
    #[error("no sandbox slot is free; try again later")]
    Overloaded,
    #[error("the function's output of {size} bytes is larger than the limit of {limit} bytes")]
    OutputTooLarge { size: usize, limit: usize },
    #[error("{}", .0.message)]
    Guest(GuestError),
}

impl InvocationError {
    /// The `outcome` label of an invocation that failed with this error
    /// (see [`crate::metrics::OUTCOMES`]).
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Trapped(_) => "trapped",
            Self::Timeout(_) => "timeout",
            Self::MemoryExhausted(_) => "memory",
            Self::Overloaded => "overloaded",
            Self::OutputTooLarge { .. } => "output-too-large",
            Self::Guest(_) => "error",
        }
    }
}

/// The `outcome` label of an invocation that either answered or failed.
fn result_outcome<T>(result: &Result<T, InvocationError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.outcome(),
    }
}

/// The `outcome` label of an invocation's result: a guest error is an
/// `error`, whether the guest returned it or the host made it one.
fn outcome_of<T>(result: &Result<Result<T, GuestError>, InvocationError>) -> &'static str {
    match result {
        Ok(Err(_)) => "error",
        other => result_outcome(other),
    }
}

/// The WIT error code named as the APIs spell it.
fn code_name(code: types::ErrorCode) -> &'static str {
    use types::ErrorCode as C;
    match code {
        C::InvalidArgument => "invalid-argument",
        C::NotFound => "not-found",
        C::AlreadyExists => "already-exists",
        C::FailedPrecondition => "failed-precondition",
        C::PermissionDenied => "permission-denied",
        C::ResourceExhausted => "resource-exhausted",
        C::Timeout => "timeout",
        C::Cancelled => "cancelled",
        C::Application => "application",
        C::Trapped => "trapped",
        C::Nondeterminism => "nondeterminism",
        C::Internal => "internal",
    }
}

fn code_value(name: &str) -> types::ErrorCode {
    use types::ErrorCode as C;
    match name {
        "invalid-argument" => C::InvalidArgument,
        "not-found" => C::NotFound,
        "already-exists" => C::AlreadyExists,
        "failed-precondition" => C::FailedPrecondition,
        "permission-denied" => C::PermissionDenied,
        "resource-exhausted" => C::ResourceExhausted,
        "timeout" => C::Timeout,
        "cancelled" => C::Cancelled,
        "trapped" => C::Trapped,
        "nondeterminism" => C::Nondeterminism,
        "internal" => C::Internal,
        _ => C::Application,
    }
}

/// The WIT record of a [`GuestError`], handed back to a guest.
pub(crate) trait ToWit {
    fn to_wit(&self) -> types::Error;
}

impl ToWit for GuestError {
    fn to_wit(&self) -> types::Error {
        types::Error {
            code: code_value(self.code),
            message: self.message.clone(),
            details: self.details.as_ref().map(|d| d.to_string()),
        }
    }
}

impl From<types::Error> for GuestError {
    fn from(e: types::Error) -> Self {
        Self {
            details: e
                .details
                .map(|d| serde_json::from_str(&d).unwrap_or(serde_json::Value::String(d))),
            ..Self::new(code_name(e.code), e.message)
        }
    }
}

/// The limits one invocation runs under: the host's, or lower ones from its
/// app's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvocationLimits {
    pub memory_bytes: usize,
    pub timeout: Duration,
    pub output_bytes: usize,
}

impl InvocationLimits {
    /// A guest's answer: its output if within the limit, or its error.
    fn checked_output(
        &self,
        answer: Result<String, types::Error>,
    ) -> Result<Result<String, GuestError>, InvocationError> {
        match answer {
            Ok(output) => self.check_output(output.len()).map(|()| Ok(output)),
            Err(e) => Ok(Err(GuestError::from(e))),
        }
    }

    /// Refuses an output of `size` bytes past the limit.
    pub fn check_output(&self, size: usize) -> Result<(), InvocationError> {
        if size > self.output_bytes {
            return Err(InvocationError::OutputTooLarge {
                size,
                limit: self.output_bytes,
            });
        }
        Ok(())
    }
}

impl SandboxLimits {
    /// The host's limits, lowered where `app` says so. `app` is assumed
    /// checked ([`crate::config::AppLimits::check`]); a value above the
    /// host's is capped at it all the same.
    pub fn for_app(&self, app: &crate::config::AppLimits) -> InvocationLimits {
        let timeout = app
            .timeout_ms
            .map_or(self.timeout, Duration::from_millis)
            .min(self.timeout);
        let memory_bytes = app
            .memory_mib
            .map_or(self.memory_bytes, |mib| mib.saturating_mul(1 << 20))
            .min(self.memory_bytes);
        InvocationLimits {
            memory_bytes,
            timeout,
            output_bytes: self.max_output_bytes,
        }
    }

    fn invocation(&self) -> InvocationLimits {
        self.for_app(&crate::config::AppLimits::default())
    }
}

/// A compiled, linked app version, ready to instantiate, with the limits
/// its invocations run under. Cloning is cheap.
#[derive(Clone)]
pub struct AppCode {
    pre: FunctionAppPre<InvocationState>,
    limits: InvocationLimits,
}

impl AppCode {
    /// The same code, run under `limits`.
    pub fn with_limits(&self, limits: InvocationLimits) -> Self {
        Self {
            pre: self.pre.clone(),
            limits,
        }
    }

    pub fn limits(&self) -> InvocationLimits {
        self.limits
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        thread::Builder::new()
            .name("perdure-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(Self { stop })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The engine, the linker with every host interface, and the limits.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<InvocationState>,
    limits: SandboxLimits,
    /// The durable engine guests reach through the `client` interface; set
    /// once it exists (it is built on top of this sandbox).
    client: std::sync::OnceLock<std::sync::Weak<dyn DurableClient>>,
    /// Activities' outbound HTTP connections.
    outbound: Arc<OutboundClient>,
    /// Invocations, instantiations and code-cache lookups are counted here.
    metrics: Arc<Metrics>,
    /// The long lanes (see [`state::LONG_RUNNING`]): one fewer than the
    /// cores, so one core is always left to short invocations.
    long_lanes: Arc<tokio::sync::Semaphore>,
    /// Every app's computing time, so that apps share the CPU fairly.
    fair_share: Arc<fair_share::FairShare>,
    _ticker: EpochTicker,
}

/// Setting up the engine failed (bad limits, no address space).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the WebAssembly engine: {0}")]
pub struct EngineError(String);

impl EngineError {
    pub(crate) fn from_join(e: &tokio::task::JoinError) -> Self {
        Self(e.to_string())
    }
}

fn engine_error(e: impl std::fmt::Display) -> EngineError {
    EngineError(e.to_string())
}

impl Sandbox {
    pub fn new(
        limits: SandboxLimits,
        outbound: OutboundClient,
        metrics: Arc<Metrics>,
    ) -> Result<Self, EngineError> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(limits.max_instances)
            .total_core_instances(limits.max_instances.saturating_mul(CORE_INSTANCES_PER_SLOT))
            .total_memories(limits.max_instances.saturating_mul(MEMORIES_PER_SLOT))
            .total_tables(limits.max_instances.saturating_mul(TABLES_PER_SLOT))
            .total_stacks(limits.max_instances)
            .max_memory_size(limits.memory_bytes)
            // Returning a slot to the pool used to reset it with madvise, and
            // the next instance then faulted its pages back in; in a
            // multi-threaded process each of those interrupts every other
            // core to flush its TLB (measured: a quarter of all CPU time
            // under load, and two cores slower than one). Instead, the pages
            // an instance dirtied (found with PAGEMAP_SCAN on Linux 6.7+)
            // are reset with memset and stay resident; what is left (a
            // store that dirtied more) is given back at its own teardown.
            .decommit_batch_size(DECOMMIT_BATCH)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT)
            .pagemap_scan(Enabled::Auto);
        let mut config = Config::new();
        // Orchestrators replay: the same wasm must compute the same results
        // on every run and every machine.
        config
            .wasm_component_model(true)
            .cranelift_nan_canonicalization(true)
            .relaxed_simd_deterministic(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(engine_error)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_error)?;
        FunctionApp::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(engine_error)?;
        let ticker = EpochTicker::start(engine.clone()).map_err(engine_error)?;
        Ok(Self {
            engine,
            linker,
            limits,
            client: std::sync::OnceLock::new(),
            outbound: Arc::new(outbound),
            metrics,
            long_lanes: Arc::new(tokio::sync::Semaphore::new(
                thread::available_parallelism()
                    .map_or(1, |n| n.get().saturating_sub(1))
                    .max(1),
            )),
            fair_share: Arc::new(fair_share::FairShare::new()),
            _ticker: ticker,
        })
    }

    /// Connects the durable engine that answers guests' `client` calls.
    pub(crate) fn set_client(&self, engine: &Arc<dyn DurableClient>) {
        let _ = self.client.set(Arc::downgrade(engine));
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn limits(&self) -> &SandboxLimits {
        &self.limits
    }

    /// The host's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The client activities send their outbound HTTP requests with.
    pub fn outbound(&self) -> &Arc<OutboundClient> {
        &self.outbound
    }

    /// Compiles (or loads from `cache`) and links a component. Blocking:
    /// run it on a blocking thread.
    pub fn load(
        &self,
        cache: &CodeCache,
        digest: &crate::model::Digest,
        bytes: &[u8],
    ) -> Result<(AppCode, CacheOutcome), LoadError> {
        let (component, outcome) = cache.load_or_compile(&self.engine, digest, bytes)?;
        self.metrics.code_cache(outcome == CacheOutcome::Hit);
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(FunctionAppPre::new)
            .map_err(|e| LoadError::World(format!("{e:#}")))?;
        let limits = self.limits.invocation();
        Ok((AppCode { pre, limits }, outcome))
    }

    /// A fresh store for one invocation of `caller`, made once its app has
    /// given way to the others if it is ahead of them (see
    /// [`fair_share`]): every invocation starts here.
    async fn store(
        &self,
        caller: Caller,
        role: Role,
        limits: InvocationLimits,
    ) -> Store<InvocationState> {
        self.fair_share.give_way(&caller.app).await;
        // Orchestrators must not reach the client: its answers are not
        // journaled, so a replay could not reproduce them.
        let client = match role {
            Role::Orchestrator(_) => None,
            _ => self.client.get().and_then(std::sync::Weak::upgrade),
        };
        let mut state = InvocationState::new(
            caller,
            role,
            limits.memory_bytes,
            limits.timeout,
            self.limits.log_bytes,
            state::Lane::new(self.long_lanes.clone()),
            self.fair_share.clone(),
        );
        state.client = client;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.memory);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            if Instant::now() >= state.deadline {
                state.timed_out = true;
                Ok(UpdateDeadline::Interrupt)
            } else if state.computing_since.elapsed() >= state::LONG_RUNNING {
                // Long-running: run on only while holding a long lane,
                // taking turns with the others.
                let turn = state.lane.next_turn();
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(state.meter.next_slice(turn)),
                ))
            } else {
                // Through tokio's own yield: it lets the worker poll the
                // I/O driver before the guest runs again. wasmtime's plain
                // `Yield` wakes the task at once, and with every worker
                // running a busy guest, sockets were polled only every 61
                // task polls (61 ticks): other apps' requests waited
                // 300-600 ms (measured with the reliability bench).
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(state.meter.next_slice(tokio::task::yield_now())),
                ))
            }
        });
        store
    }

    /// Instantiates `code` in `store`, timing it for the metrics.
    async fn instantiate(
        &self,
        code: &AppCode,
        store: &mut Store<InvocationState>,
    ) -> wasmtime::Result<FunctionApp> {
        let started = Instant::now();
        let app = code.pre.instantiate_async(&mut *store).await?;
        self.metrics
            .instantiation(store.data().caller.kind, started.elapsed());
        Ok(app)
    }

    /// Instantiates `code` in a fresh store and runs `call` in it, under
    /// the code's limits, mapping every way it can fail to an
    /// [`InvocationError`]. With `bounded`, the time limit bounds the whole
    /// invocation, host calls included (orchestrators are not: they wait for
    /// their work). Returns the store's data too (see [`retire`]).
    async fn invoke<R, F>(
        &self,
        code: &AppCode,
        caller: Caller,
        role: Role,
        bounded: bool,
        call: F,
    ) -> (Result<R, InvocationError>, Option<InvocationState>)
    where
        F: for<'a> FnOnce(
            &'a FunctionApp,
            &'a mut Store<InvocationState>,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = wasmtime::Result<R>> + Send + 'a>,
        >,
    {
        let limits = code.limits;
        let mut store = self.store(caller, role, limits).await;
        let run = async {
            let app = self.instantiate(code, &mut store).await?;
            call(&app, &mut store).await
        };
        let outcome = if bounded {
            tokio::time::timeout(limits.timeout, run).await
        } else {
            Ok(run.await)
        };
        let result = match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(classify(&store, limits, e)),
            Err(_elapsed) => Err(InvocationError::Timeout(limits.timeout)),
        };
        (result, retire(store).await)
    }
}

/// Tears `store` down and returns its data (`None` only if the runtime shut
/// down first). Returning a slot to the pool hands the pages its memory
/// dirtied beyond `KEEP_RESIDENT` back to the kernel (`DECOMMIT_BATCH`
/// is one: no other store's pages come with them): for a store that grew
/// tens of MiB that is milliseconds in one `madvise`, during which the
/// thread runs nothing else. So a store larger than
/// `INLINE_TEARDOWN_BYTES` is torn down on the blocking pool, and its
/// pages are freed there, never on an async worker where other apps'
/// requests wait.
async fn retire(store: Store<InvocationState>) -> Option<InvocationState> {
    if store.data().memory.largest_bytes <= INLINE_TEARDOWN_BYTES {
        return Some(store.into_data());
    }
    match tokio::task::spawn_blocking(move || store.into_data()).await {
        Ok(data) => Some(data),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_cancelled) => None,
    }
}

/// What a failed invocation's error means, from what its store saw.
fn classify(
    store: &Store<InvocationState>,
    limits: InvocationLimits,
    e: wasmtime::Error,
) -> InvocationError {
    let state = store.data();
    if state.timed_out {
        return InvocationError::Timeout(limits.timeout);
    }
    if state.memory.exceeded {
        return InvocationError::MemoryExhausted(limits.memory_bytes);
    }
    if e.downcast_ref::<PoolConcurrencyLimitError>().is_some() {
        return InvocationError::Overloaded;
    }
    if let Role::Orchestrator(session) = &state.role
        && session.stopped_by_host()
    {
        // The host stopped the guest on purpose (eviction, shutdown,
        // nondeterminism); the engine reports it where it matters.
        return InvocationError::Trapped(e.root_cause().to_string());
    }
    // The full chain (with the guest's wasm backtrace) goes to the log
    // for the author; the caller gets the cause alone.
    let caller = &store.data().caller;
    tracing::warn!(
        app = &*caller.app,
        function = &*caller.function,
        "invocation failed: {e:#}"
    );
    let cause = match e.downcast_ref::<Trap>() {
        Some(Trap::StackOverflow) => "stack overflow".to_owned(),
        Some(trap) => trap.to_string(),
        None => e.root_cause().to_string(),
    };
    InvocationError::Trapped(cause)
}

impl Sandbox {
    /// Asks a component to describe itself.
    pub async fn describe(
        &self,
        code: &AppCode,
        app: &str,
    ) -> Result<Vec<RawFunction>, InvocationError> {
        let caller = Caller {
            app: app.into(),
            function: "describe".into(),
            kind: FunctionKind::Http,
        };
        let described = self
            .invoke(code, caller, Role::Plain, true, |app, store| {
                Box::pin(async move { app.perdure_functions_app().call_describe(store).await })
            })
            .await
            .0?;
        Ok(described.functions.into_iter().map(raw_function).collect())
    }

    /// Runs an HTTP function.
    pub async fn handle_http(
        &self,
        code: &AppCode,
        caller: Caller,
        request: types::HttpRequest,
    ) -> Result<types::HttpResponse, InvocationError> {
        let started = Instant::now();
        let counted = caller.clone();
        let function = caller.function.clone();
        let traceparent = request
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("traceparent"))
            .map(|(_, value)| value.clone());
        let result = self
            .invoke(code, caller, Role::Plain, true, move |app, store| {
                Box::pin(async move {
                    store.data_mut().traceparent = traceparent;
                    app.perdure_functions_app()
                        .call_handle_http(store, &function, &request)
                        .await
                })
            })
            .await
            .0
            .and_then(|result| {
                let response = result.map_err(|e| InvocationError::Guest(e.into()))?;
                let headers: usize = response
                    .headers
                    .iter()
                    .map(|(n, v)| n.len() + v.len())
                    .sum();
                code.limits.check_output(response.body.len() + headers)?;
                Ok(response)
            });
        self.count(&counted, result_outcome(&result), started);
        result
    }

    /// Counts one invocation of `caller` that ended with `outcome`.
    pub(crate) fn count(&self, caller: &Caller, outcome: &'static str, started: Instant) {
        self.metrics.invocation(
            &caller.app,
            &caller.function,
            caller.kind,
            outcome,
            started.elapsed(),
        );
    }

    /// Runs an orchestrator from the start; its session answers the
    /// durable calls (from the journal, then live). Returns the session
    /// with the outcome, so the engine can record how the run ended.
    pub(crate) async fn run_orchestrator<S: OrchestratorSession>(
        &self,
        code: &AppCode,
        caller: Caller,
        input: String,
        session: S,
    ) -> (
        Result<Result<String, GuestError>, InvocationError>,
        Option<S>,
    ) {
        let started = Instant::now();
        let counted = caller.clone();
        let function = caller.function.to_string();
        let instance_id = session.instance_id().to_owned();
        let role = Role::Orchestrator(Box::new(session));
        let (result, state) = self
            .invoke(code, caller, role, false, move |app, store| {
                Box::pin(async move {
                    app.perdure_functions_app()
                        .call_run_orchestrator(store, &function, &instance_id, &input)
                        .await
                })
            })
            .await;
        let session = match state.map(|state| state.role) {
            Some(Role::Orchestrator(session)) => {
                session.into_any().downcast::<S>().ok().map(|s| *s)
            }
            _ => None,
        };
        let result = result.and_then(|r| code.limits.checked_output(r));
        // A run the host stopped (eviction, shutdown) did not fail.
        let outcome = if session.as_ref().is_some_and(|s| s.stopped_by_host()) {
            "stopped"
        } else {
            outcome_of(&result)
        };
        self.count(&counted, outcome, started);
        (result, session)
    }

    /// Runs an activity once.
    pub async fn run_activity(
        &self,
        code: &AppCode,
        caller: Caller,
        info: ActivityInfo,
        input: &str,
    ) -> Result<Result<String, GuestError>, InvocationError> {
        let started = Instant::now();
        let counted = caller.clone();
        let function = caller.function.clone();
        let input = input.to_owned();
        let role = Role::Activity(info);
        let (result, _) = self
            .invoke(code, caller, role, true, move |app, store| {
                Box::pin(async move {
                    app.perdure_functions_app()
                        .call_run_activity(store, &function, &input)
                        .await
                })
            })
            .await;
        let result = result.and_then(|r| code.limits.checked_output(r));
        self.count(&counted, outcome_of(&result), started);
        result
    }
}

fn raw_function(f: types::FunctionDescriptor) -> RawFunction {
    RawFunction {
        name: f.name,
        kind: match f.kind {
            types::FunctionKind::Http => FunctionKind::Http,
            types::FunctionKind::Orchestrator => FunctionKind::Orchestrator,
            types::FunctionKind::Activity => FunctionKind::Activity,
            types::FunctionKind::Entity => FunctionKind::Entity,
        },
        http: f.http.map(|t| RawTrigger {
            route: t.route,
            methods: t.methods,
            auth_level: match t.auth_level {
                types::AuthLevel::Anonymous => AuthLevel::Anonymous,
                types::AuthLevel::Function => AuthLevel::Function,
                types::AuthLevel::Admin => AuthLevel::Admin,
            },
        }),
        operations: f.operations,
    }
}
