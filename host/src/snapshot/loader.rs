//! Loading a snapshot's plugin attachments: identical attachments share one
//! pool, unchanged ones are carried over from the previous snapshot, and a
//! hot swap reads only the changed plugin's file.

use std::collections::HashMap;
use std::sync::Arc;

use super::Snapshot;
use crate::config::{AttachmentConfig, Config};
use crate::plugin::chain::Variant;
use crate::plugin::shadow::Shadow;
use crate::plugin::{Attachment, LoadError, PluginRuntime};

/// Loads attachments for one snapshot build, sharing identical ones.
pub(super) struct Loader<'a> {
    runtime: &'a Arc<PluginRuntime>,
    built: HashMap<AttachmentConfig, Arc<Attachment>>,
    previous: HashMap<AttachmentConfig, Arc<Attachment>>,
    /// A hot swap: only this plugin's files are read; every other attachment
    /// found in `previous` is carried over untouched.
    only: Option<&'a str>,
}

impl<'a> Loader<'a> {
    pub(super) fn new(
        runtime: &'a Arc<PluginRuntime>,
        previous: Option<&Snapshot>,
        only: Option<&'a str>,
    ) -> Self {
        let previous = previous
            .map(|s| {
                s.attachments()
                    .into_iter()
                    .map(|a| (a.config().clone(), a))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            runtime,
            built: HashMap::new(),
            previous,
            only,
        }
    }

    pub(super) async fn attachment(
        &mut self,
        cfg: &AttachmentConfig,
        config: &Config,
    ) -> Result<Arc<Attachment>, LoadError> {
        if let Some(a) = self.built.get(cfg) {
            return Ok(a.clone());
        }
        let att = self.load(cfg, config).await?;
        self.built.insert(cfg.clone(), att.clone());
        Ok(att)
    }

    async fn load(
        &self,
        cfg: &AttachmentConfig,
        config: &Config,
    ) -> Result<Arc<Attachment>, LoadError> {
        if self.only.is_some_and(|n| !cfg.uses(n))
            && let Some(prev) = self.previous.get(cfg)
        {
            return Ok(prev.clone());
        }
        if !cfg.versions.is_empty() {
            return self.load_versions(cfg, config).await;
        }
        let path =
            match PluginRuntime::locate(&config.plugin_dir, &cfg.name, config.allow_precompiled) {
                Ok(p) => p,
                // A hot swap never unloads: a file removed from `plugin_dir`
                // leaves the running version serving, as a broken one does.
                Err(_) if self.only.is_some() && self.previous.contains_key(cfg) => {
                    return Ok(self.previous[cfg].clone());
                }
                Err(_) if cfg.optional => {
                    tracing::info!(
                        plugin = &*cfg.name,
                        "optional plugin not present yet; serving without it"
                    );
                    return Ok(Arc::new(Attachment::new(cfg.clone(), None)));
                }
                Err(e) => return Err(e),
            };
        let compiled = self.compile(cfg, path).await?;
        if let Some(pinned) = &cfg.sha256
            && **pinned != *compiled.sha256
        {
            return Err(LoadError::Pinned {
                name: cfg.name.to_string(),
                pinned: pinned.to_string(),
                actual: compiled.sha256.to_string(),
            });
        }
        if let Some(prev) = self.previous.get(cfg)
            && prev.version().as_deref() == Some(&*compiled.version)
        {
            return Ok(prev.clone());
        }
        let pool = self.runtime.start_pool(&compiled, cfg).await?;
        self.shadowed(Attachment::new(cfg.clone(), Some(pool)), config)
            .await
    }

    /// Compiles the component at `path` for `cfg`, off the runtime's workers.
    async fn compile(
        &self,
        cfg: &AttachmentConfig,
        path: std::path::PathBuf,
    ) -> Result<crate::plugin::runtime::Compiled, LoadError> {
        let rt = self.runtime.clone();
        let name = cfg.name.clone();
        tokio::task::spawn_blocking(move || rt.compile(&name, &path))
            .await
            .map_err(|e| LoadError::Compile {
                name: cfg.name.to_string(),
                message: format!("compile task failed: {e}"),
            })?
    }

    /// `a` with its shadow version started, when its config names one: on
    /// host state of its own (`<name>~shadow`) and without callouts.
    async fn shadowed(&self, a: Attachment, config: &Config) -> Result<Arc<Attachment>, LoadError> {
        let Some(file) = a.config().shadow.clone() else {
            return Ok(Arc::new(a));
        };
        let cfg = a.config();
        let path = config.plugin_dir.join(&*file);
        let compiled = self.compile(cfg, path).await?;
        let mut shadow_cfg = cfg.clone();
        shadow_cfg.callouts.clear();
        let state = self.runtime.shared(&format!("{}~shadow", cfg.name).into());
        let pool = self
            .runtime
            .start_pool_on(&compiled, &shadow_cfg, state)
            .await?;
        let label = file.strip_suffix(".wasm").unwrap_or(&file).into();
        let stats = self.runtime.metrics().shadow(&cfg.name);
        Ok(Arc::new(a.with_shadow(Shadow::new(label, pool, stats))))
    }

    /// An attachment with `versions`: each file compiled and started with
    /// the attachment's config (a version that cannot start fails the load,
    /// as one file would). The versions share the plugin's host state.
    async fn load_versions(
        &self,
        cfg: &AttachmentConfig,
        config: &Config,
    ) -> Result<Arc<Attachment>, LoadError> {
        let mut variants = Vec::with_capacity(cfg.versions.len());
        for v in &cfg.versions {
            let path = config.plugin_dir.join(&*v.file);
            let compiled = self.compile(cfg, path).await?;
            let pool = self.runtime.start_pool(&compiled, cfg).await?;
            let label: Arc<str> = v.label().into();
            let requests = self.runtime.metrics().plugin_version(&cfg.name, &label);
            variants.push(Variant {
                label,
                weight: v.weight,
                pool,
                requests,
            });
        }
        self.shadowed(Attachment::versions(cfg.clone(), variants), config)
            .await
    }
}
