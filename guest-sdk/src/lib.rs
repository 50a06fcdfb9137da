//! The Perdure guest SDK: write function apps in Rust.
//!
//! A function app is one WebAssembly component (`wasm32-wasip2`) that exports
//! several functions. Each function is an ordinary Rust function registered
//! with one line of [`export_app!`]:
//!
//! ```no_run
//! use perdure_sdk::prelude::*;
//!
//! fn greet(req: HttpRequest) -> Result<HttpResponse> {
//!     let name = req.query("name").unwrap_or("world");
//!     Ok(HttpResponse::text(200, format!("Hello, {name}.")))
//! }
//!
//! perdure_sdk::export_app! {
//!     Function::http("GreetFunction", greet).route("greet").methods(["GET", "POST"]),
//! }
//! ```
//!
//! Inputs, outputs and entity state cross the host boundary as JSON and are
//! typed on this side with serde. The raw WIT bindings stay inside this
//! crate; authors never see them.

extern crate self as perdure_sdk;

mod activity;
mod client;
mod entity;
mod error;
mod http;
pub mod log;
mod orchestration;
pub mod outbound;
mod registry;

/// Bindings generated from the WIT package in `wit/`. Public only so that
/// [`export_app!`] can reach them from the author's crate; not a stable API.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "function-app",
        pub_export_macro: true,
        export_macro_name: "__export_function_app",
        default_bindings_module: "perdure_sdk::bindings",
        runtime_path: "perdure_sdk::__wit_bindgen::rt",
    });
}

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

pub use activity::ActivityContext;
pub use client::{DurableClient, InstanceStatus, RuntimeStatus};
pub use entity::{Entity, EntityContext, EntityId, Operations};
pub use error::{Error, ErrorCode, Result};
pub use http::{HttpRequest, HttpResponse};
pub use orchestration::{OrchestrationContext, RetryPolicy, Task};
pub use registry::{App, AuthLevel, Exports, Function};

/// Re-exported so that apps need no direct dependency to use JSON values.
pub use serde_json::{self, Value, json};

/// Everything a function app usually needs.
pub mod prelude {
    pub use crate::{
        ActivityContext, AuthLevel, DurableClient, Entity, EntityContext, EntityId, Error,
        ErrorCode, Function, HttpRequest, HttpResponse, Operations, OrchestrationContext, Result,
        RetryPolicy, Task, Value, json,
    };
    pub use serde::{Deserialize, Serialize};
}

/// Exports the app's functions, one expression per function:
///
/// ```no_run
/// # use perdure_sdk::prelude::*;
/// # fn start_process(_: HttpRequest) -> Result<HttpResponse> { Ok(HttpResponse::new(202)) }
/// # fn long_running(_: &OrchestrationContext, _: Value) -> Result<Value> { Ok(Value::Null) }
/// # fn work(input: String) -> Result<String> { Ok(input) }
/// # #[derive(Default, Serialize, Deserialize)]
/// # struct Counter(i64);
/// # impl Entity for Counter {
/// #     fn operations() -> Operations<Self> { Operations::new().read("get", |c: &Counter| c.0) }
/// # }
/// perdure_sdk::export_app! {
///     Function::http("StartProcess", start_process).route("process").methods(["POST"]),
///     Function::orchestrator("LongRunningOrchestration", long_running),
///     Function::activity("Work", work),
///     Function::entity::<Counter>("Counter"),
/// }
/// ```
///
/// Use it once per app, at the crate root of a `cdylib` crate.
#[macro_export]
macro_rules! export_app {
    ($($function:expr),* $(,)?) => {
        #[doc(hidden)]
        pub struct __PerdureApp;

        impl $crate::App for __PerdureApp {
            fn functions() -> ::std::vec::Vec<$crate::Function> {
                #[allow(unused_imports)]
                use $crate::Function;
                ::std::vec![$($function),*]
            }
        }

        #[doc(hidden)]
        pub type __PerdureExports = $crate::Exports<__PerdureApp>;

        $crate::bindings::__export_function_app!(__PerdureExports with_types_in $crate::bindings);
    };
}
