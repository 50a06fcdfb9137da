//! The data of one invocation's store: its WASI context (deny-by-default),
//! its memory cap, its deadline, and who is running.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Instant;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::guest_log::{GuestOutput, LogTag};
use crate::model::FunctionKind;

/// Caps linear memory and table growth of one store. Growing past the cap
/// traps and records why, so the failure can be reported as a memory limit
/// rather than a generic trap.
pub(crate) struct MemoryCap {
    pub(crate) max_bytes: usize,
    pub(crate) exceeded: bool,
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

/// The store data of one invocation.
pub(crate) struct InvocationState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) memory: MemoryCap,
    pub(crate) caller: Caller,
    pub(crate) deadline: Instant,
    pub(crate) timed_out: bool,
}

impl InvocationState {
    /// A deny-by-default WASI context: no preopened directories, no
    /// environment, no arguments, no sockets or name lookups; stdout and
    /// stderr go to the host log, within `log_budget` bytes.
    pub(crate) fn new(
        caller: Caller,
        max_memory: usize,
        deadline: Instant,
        log_budget: usize,
    ) -> Self {
        let tag = LogTag {
            app: caller.app.clone(),
            function: caller.function.clone(),
        };
        let budget = Arc::new(AtomicUsize::new(log_budget));
        let wasi = WasiCtxBuilder::new()
            .stdout(GuestOutput::new(tag.clone(), "stdout", budget.clone()))
            .stderr(GuestOutput::new(tag, "stderr", budget))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryCap {
                max_bytes: max_memory,
                exceeded: false,
            },
            caller,
            deadline,
            timed_out: false,
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
