//! Registration of an app's functions and the dispatch of every invocation
//! the host makes to them.

use std::marker::PhantomData;
use std::sync::OnceLock;

use serde::{Serialize, de::DeserializeOwned};

use crate::bindings::exports::perdure::functions::app::{self, EntityRequest, EntityResponse};
use crate::bindings::perdure::functions::types as wit;
use crate::entity::Entity;
use crate::error::{Error, ErrorCode, Result};
use crate::http::{HttpRequest, HttpResponse};
use crate::orchestration::OrchestrationContext;

/// Who may call an HTTP function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthLevel {
    /// Anyone.
    Anonymous,
    /// A function key or the master key (the default).
    Function,
    /// The master key only.
    Admin,
}

type HttpHandler = Box<dyn Fn(HttpRequest) -> Result<HttpResponse> + Send + Sync>;
type OrchestratorHandler = Box<dyn Fn(&OrchestrationContext, &str) -> Result<String> + Send + Sync>;
type ActivityHandler = Box<dyn Fn(&str) -> Result<String> + Send + Sync>;
type EntityHandler = Box<dyn Fn(EntityRequest) -> Result<EntityResponse> + Send + Sync>;

enum Handler {
    Http {
        handler: HttpHandler,
        route: Option<String>,
        methods: Vec<String>,
        auth: AuthLevel,
    },
    Orchestrator(OrchestratorHandler),
    Activity(ActivityHandler),
    Entity {
        run: EntityHandler,
        operations: Vec<String>,
    },
}

/// One exported function: a name, a kind and the Rust function behind it.
pub struct Function {
    name: String,
    handler: Handler,
}

fn decode_input<I: DeserializeOwned>(json: &str) -> Result<I> {
    serde_json::from_str(json).map_err(|e| Error::invalid_argument(format!("invalid input: {e}")))
}

fn encode_output<O: Serialize>(value: &O) -> Result<String> {
    serde_json::to_string(value).map_err(|e| {
        Error::new(
            ErrorCode::Internal,
            format!("output is not serializable: {e}"),
        )
    })
}

impl Function {
    /// An HTTP-triggered function. By default its route is its name, it
    /// accepts GET and POST, and it needs a function key.
    pub fn http<F>(name: impl Into<String>, handler: F) -> Self
    where
        F: Fn(HttpRequest) -> Result<HttpResponse> + Send + Sync + 'static,
    {
        Self {
            name: name.into(),
            handler: Handler::Http {
                handler: Box::new(handler),
                route: None,
                methods: vec!["GET".into(), "POST".into()],
                auth: AuthLevel::Function,
            },
        }
    }

    /// An orchestrator: deterministic code that calls activities, timers
    /// and events through its context. Its input and output are JSON.
    pub fn orchestrator<I, O, F>(name: impl Into<String>, handler: F) -> Self
    where
        I: DeserializeOwned,
        O: Serialize,
        F: Fn(&OrchestrationContext, I) -> Result<O> + Send + Sync + 'static,
    {
        Self {
            name: name.into(),
            handler: Handler::Orchestrator(Box::new(move |ctx, input| {
                encode_output(&handler(ctx, decode_input(input)?)?)
            })),
        }
    }

    /// An activity: a unit of work scheduled by orchestrators, run at least
    /// once. [`ActivityContext::current`] tells which call it serves.
    pub fn activity<I, O, F>(name: impl Into<String>, handler: F) -> Self
    where
        I: DeserializeOwned,
        O: Serialize,
        F: Fn(I) -> Result<O> + Send + Sync + 'static,
    {
        Self {
            name: name.into(),
            handler: Handler::Activity(Box::new(move |input| {
                encode_output(&handler(decode_input(input)?)?)
            })),
        }
    }

    /// An entity whose state is an `E`.
    pub fn entity<E: Entity>(name: impl Into<String>) -> Self {
        let name = name.into();
        let entity_name = name.clone();
        let operations = E::operations();
        Self {
            name,
            handler: Handler::Entity {
                operations: operations.names(),
                run: Box::new(move |request| operations.apply(&entity_name, request)),
            },
        }
    }

    /// The route below `/api/` of an HTTP function, e.g. `orders/{id}`.
    pub fn route(mut self, template: impl Into<String>) -> Self {
        if let Handler::Http { route, .. } = &mut self.handler {
            *route = Some(template.into());
        }
        self
    }

    /// The methods an HTTP function accepts.
    pub fn methods<M: Into<String>>(mut self, list: impl IntoIterator<Item = M>) -> Self {
        if let Handler::Http { methods, .. } = &mut self.handler {
            *methods = list
                .into_iter()
                .map(|m| m.into().to_ascii_uppercase())
                .collect();
        }
        self
    }

    /// Who may call an HTTP function.
    pub fn auth(mut self, level: AuthLevel) -> Self {
        if let Handler::Http { auth, .. } = &mut self.handler {
            *auth = level;
        }
        self
    }

    fn descriptor(&self) -> wit::FunctionDescriptor {
        let (kind, http) = match &self.handler {
            Handler::Http {
                route,
                methods,
                auth,
                ..
            } => (
                wit::FunctionKind::Http,
                Some(wit::HttpTrigger {
                    route: route.clone().unwrap_or_else(|| self.name.clone()),
                    methods: methods.clone(),
                    auth_level: match auth {
                        AuthLevel::Anonymous => wit::AuthLevel::Anonymous,
                        AuthLevel::Function => wit::AuthLevel::Function,
                        AuthLevel::Admin => wit::AuthLevel::Admin,
                    },
                }),
            ),
            Handler::Orchestrator(_) => (wit::FunctionKind::Orchestrator, None),
            Handler::Activity(_) => (wit::FunctionKind::Activity, None),
            Handler::Entity { .. } => (wit::FunctionKind::Entity, None),
        };
        let operations = match &self.handler {
            Handler::Entity { operations, .. } => operations.clone(),
            _ => Vec::new(),
        };
        wit::FunctionDescriptor {
            name: self.name.clone(),
            kind,
            http,
            operations,
        }
    }
}

/// The list of functions an app exports; implemented by [`crate::export_app!`].
pub trait App {
    fn functions() -> Vec<Function>;
}

/// The component's exports for app `A`; instantiated by [`crate::export_app!`].
pub struct Exports<A>(PhantomData<A>);

static FUNCTIONS: OnceLock<Vec<Function>> = OnceLock::new();

fn functions<A: App>() -> &'static [Function] {
    FUNCTIONS.get_or_init(A::functions)
}

fn find<A: App>(name: &str) -> Result<&'static Handler> {
    functions::<A>()
        .iter()
        .find(|f| f.name == name)
        .map(|f| &f.handler)
        .ok_or_else(|| Error::new(ErrorCode::NotFound, format!("no function named {name}")))
}

fn wrong_kind(name: &str, expected: &str) -> wit::Error {
    Error::new(
        ErrorCode::InvalidArgument,
        format!("function {name} is not {expected}"),
    )
    .into()
}

impl<A: App> app::Guest for Exports<A> {
    fn describe() -> wit::AppDescriptor {
        wit::AppDescriptor {
            functions: functions::<A>().iter().map(Function::descriptor).collect(),
        }
    }

    fn handle_http(
        function: String,
        request: wit::HttpRequest,
    ) -> Result<wit::HttpResponse, wit::Error> {
        match find::<A>(&function)? {
            Handler::Http { handler, .. } => Ok(handler(request.into())?.into()),
            _ => Err(wrong_kind(&function, "an HTTP function")),
        }
    }

    fn run_orchestrator(
        function: String,
        instance_id: String,
        input: String,
    ) -> Result<String, wit::Error> {
        match find::<A>(&function)? {
            Handler::Orchestrator(handler) => {
                Ok(handler(&OrchestrationContext::new(instance_id), &input)?)
            }
            _ => Err(wrong_kind(&function, "an orchestrator")),
        }
    }

    fn run_activity(function: String, input: String) -> Result<String, wit::Error> {
        match find::<A>(&function)? {
            Handler::Activity(handler) => Ok(handler(&input)?),
            _ => Err(wrong_kind(&function, "an activity")),
        }
    }

    fn run_entity(function: String, request: EntityRequest) -> Result<EntityResponse, wit::Error> {
        match find::<A>(&function)? {
            Handler::Entity { run, .. } => Ok(run(request)?),
            _ => Err(wrong_kind(&function, "an entity")),
        }
    }
}
