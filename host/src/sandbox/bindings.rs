//! Host-side bindings of the `perdure:functions` WIT package.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "function-app",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use self::perdure::functions::types;
