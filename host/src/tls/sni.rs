//! Certificate selection by SNI: exact SAN first, then a wildcard SAN one label
//! deep, then the listener's default (its first certificate).

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::pem::dns_names;

/// A listener's certificates with the names each answers to.
#[derive(Debug)]
pub struct CertStore {
    /// `(names, key)` in config order; the first is the default.
    entries: Vec<(Vec<String>, Arc<CertifiedKey>)>,
}

impl CertStore {
    /// Indexes `keys` by the DNS names in their leaf certificates.
    /// `None` when there is no certificate at all.
    pub fn new(keys: Vec<Arc<CertifiedKey>>) -> Option<Self> {
        if keys.is_empty() {
            return None;
        }
        let entries = keys
            .into_iter()
            .map(|k| (k.cert.first().map(dns_names).unwrap_or_default(), k))
            .collect();
        Some(Self { entries })
    }

    /// The certificate for `sni` (already lowercase, as rustls hands it over).
    pub fn pick(&self, sni: Option<&str>) -> &Arc<CertifiedKey> {
        if let Some(name) = sni {
            let exact = self
                .entries
                .iter()
                .find(|(names, _)| names.iter().any(|n| n == name));
            if let Some((_, k)) = exact {
                return k;
            }
            let wildcard = self
                .entries
                .iter()
                .find(|(names, _)| names.iter().any(|n| wildcard_matches(n, name)));
            if let Some((_, k)) = wildcard {
                return k;
            }
        }
        &self.entries[0].1
    }
}

/// `*.example.com` matches `a.example.com`, not `example.com` or `a.b.example.com`
/// (RFC 6125 §6.4.3).
fn wildcard_matches(pattern: &str, name: &str) -> bool {
    let Some(suffix) = pattern.strip_prefix("*.") else {
        return false;
    };
    match name.split_once('.') {
        Some((label, rest)) => !label.is_empty() && rest == suffix,
        None => false,
    }
}

/// The rustls resolver of one listener; the store is replaced when the
/// certificate files change.
#[derive(Debug)]
pub struct SniResolver(ArcSwap<CertStore>);

impl SniResolver {
    /// A resolver serving `store`.
    pub fn new(store: CertStore) -> Self {
        Self(ArcSwap::from_pointee(store))
    }

    /// Serves `store` to new handshakes from now on.
    pub fn replace(&self, store: CertStore) {
        self.0.store(Arc::new(store));
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let store = self.0.load();
        Some(store.pick(hello.server_name()).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_exactly_one_label() {
        assert!(wildcard_matches("*.example.com", "a.example.com"));
        assert!(!wildcard_matches("*.example.com", "example.com"));
        assert!(!wildcard_matches("*.example.com", "a.b.example.com"));
        assert!(!wildcard_matches("*.example.com", ".example.com"));
        assert!(!wildcard_matches("a.example.com", "a.example.com"));
    }
}
