//! Why the runtime, or one plugin, could not start.

/// Why the plugin runtime could not start (the gateway does not either).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The engine rejected its configuration (unsupported on this CPU).
    #[error("wasmtime engine: {0:#}")]
    Engine(wasmtime::Error),
    /// WASI could not be linked.
    #[error("linking WASI: {0:#}")]
    Wasi(wasmtime::Error),
    /// The host API could not be linked.
    #[error("linking the host API: {0:#}")]
    HostApi(wasmtime::Error),
}

/// Why a plugin could not be loaded. Shown to the operator; the previous
/// version (if any) keeps serving.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    /// Neither `<name>.wasm` nor `<name>.cwasm` exists in `plugin_dir`.
    #[error("plugin `{name}`: no {name}.wasm or {name}.cwasm in {dir}")]
    Missing {
        /// Plugin name.
        name: String,
        /// The directory searched.
        dir: String,
    },
    /// The file is not the one the attachment pins.
    #[error("plugin `{name}`: the file's SHA-256 is {actual}, the config pins {pinned}")]
    Pinned {
        /// Plugin name.
        name: String,
        /// What the config says.
        pinned: String,
        /// What the file hashes to.
        actual: String,
    },
    /// The file could not be read.
    #[error("plugin `{name}`: cannot read {path}: {message}")]
    Read {
        /// Plugin name.
        name: String,
        /// File path.
        path: String,
        /// The I/O error.
        message: String,
    },
    /// Not a valid component, or not built for this engine.
    #[error("plugin `{name}`: not a loadable component: {message}")]
    Compile {
        /// Plugin name.
        name: String,
        /// What wasmtime said.
        message: String,
    },
    /// The component does not implement the `gatehouse:plugin/plugin` world.
    #[error("plugin `{name}`: does not match the gatehouse:plugin world: {message}")]
    Link {
        /// Plugin name.
        name: String,
        /// What wasmtime said.
        message: String,
    },
    /// Only a `.cwasm` exists and the config does not allow precompiled plugins.
    #[error(
        "plugin `{name}`: {path} is precompiled native code; set `allow_precompiled: true` to load it, or provide {name}.wasm"
    )]
    Precompiled {
        /// Plugin name.
        name: String,
        /// The `.cwasm` found.
        path: String,
    },
    /// Instantiation or `init` failed.
    #[error("plugin `{name}`: {message}")]
    Init {
        /// Plugin name.
        name: String,
        /// What failed.
        message: String,
    },
}
