//! TLS termination for listeners: rustls with certificates chosen by SNI,
//! optional or required client certificates (mTLS), ALPN `h2` / `http/1.1`,
//! and certificate files re-read when they change.

pub mod peer;
pub mod sni;

use std::sync::Arc;
use std::time::SystemTime;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::{CertPaths, ClientAuth, ListenerTls};
use crate::pem;
pub use crate::pem::TlsError;
pub use peer::PeerIdentity;
use sni::{CertStore, SniResolver};

/// A listener's TLS state: the acceptor and the resolver its watcher updates.
pub struct TlsServer {
    /// Accepts TLS connections with the listener's settings.
    pub acceptor: TlsAcceptor,
    resolver: Arc<SniResolver>,
    config: ListenerTls,
}

impl TlsServer {
    /// Loads every certificate and the client CA; fails with the file at fault.
    pub fn build(config: &ListenerTls) -> Result<Self, TlsError> {
        let resolver = Arc::new(SniResolver::new(load_store(&config.certificates)?));
        let provider = pem::provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match &config.client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Optional(ca) | ClientAuth::Required(ca) => {
                let roots = Arc::new(pem::root_store(ca)?);
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
                let verifier = if matches!(config.client_auth, ClientAuth::Optional(_)) {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| TlsError::Config(format!("client CA `{}`: {e}", ca.display())))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut server = builder.with_cert_resolver(resolver.clone());
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            resolver,
            config: config.clone(),
        })
    }

    /// The header that carries a verified client identity upstream, if any.
    pub fn client_cert_header(&self) -> Option<&http::HeaderName> {
        self.config.client_cert_header.as_ref()
    }

    /// How a verified client certificate names a consumer, if it does.
    pub fn client_consumer(&self) -> Option<&crate::config::ClientConsumer> {
        self.config.client_consumer.as_ref()
    }

    /// Re-reads the certificate files whenever their size or modification time
    /// changes, until `shutdown`. A file that fails to load keeps the
    /// certificates being served and is retried on its next change.
    pub async fn watch(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut seen = stamp(&self.config.certificates);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.config.watch_interval) => {}
                _ = shutdown.changed() => return,
            }
            let paths = self.config.certificates.clone();
            let previous = seen.clone();
            let checked = tokio::task::spawn_blocking(move || {
                let now = stamp(&paths);
                let loaded = (now != previous).then(|| load_store(&paths));
                (now, loaded)
            })
            .await;
            let Ok((now, Some(loaded))) = checked else {
                continue;
            };
            seen = now;
            match loaded {
                Ok(store) => {
                    self.resolver.replace(store);
                    tracing::info!("TLS certificates reloaded");
                }
                Err(e) => tracing::error!(
                    error = %e,
                    "TLS certificate change rejected; serving the previous certificates"
                ),
            }
        }
    }
}

fn load_store(paths: &[CertPaths]) -> Result<CertStore, TlsError> {
    let keys = paths
        .iter()
        .map(|p| pem::certified_key(&p.cert_file, &p.key_file))
        .collect::<Result<Vec<_>, _>>()?;
    CertStore::new(keys).ok_or_else(|| TlsError::Config("no certificate configured".into()))
}

/// Size and mtime of every file, to notice renewals (including atomic renames).
fn stamp(paths: &[CertPaths]) -> Vec<Option<(u64, SystemTime)>> {
    paths
        .iter()
        .flat_map(|p| [&p.cert_file, &p.key_file])
        .map(|f| {
            let m = std::fs::metadata(f).ok()?;
            Some((m.len(), m.modified().ok()?))
        })
        .collect()
}
