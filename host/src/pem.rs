//! Reading PEM certificates and keys, and the names a certificate answers to.
//!
//! A leaf module: config validation loads certificates through it (so a bad
//! file is a config error naming its path) and `tls`/`upstream` build rustls
//! configurations from the same functions.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// Why a certificate, key or CA file cannot be used. Always names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file holds no PEM certificate.
    #[error("`{0}` holds no PEM certificate")]
    NoCertificate(PathBuf),
    /// The file is not PEM or a block is damaged.
    #[error("`{path}` is not valid PEM: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// The key file holds no usable private key.
    #[error("`{path}`: unusable private key: {message}")]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The key does not belong to the certificate.
    #[error("`{key}` is not the private key of `{cert}`")]
    Mismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
    /// rustls refused the resulting configuration.
    #[error("{0}")]
    Config(String),
}

/// The crypto provider used for every TLS configuration (ring: already built
/// for signatures, no C toolchain needed).
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::LazyLock<Arc<CryptoProvider>> =
        std::sync::LazyLock::new(|| Arc::new(rustls::crypto::ring::default_provider()));
    PROVIDER.clone()
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in a PEM file, in order (leaf first for a chain).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

/// The first private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Key {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// A certificate chain with its signing key, checked to belong together.
pub fn certified_key(cert_file: &Path, key_file: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = load_certs(cert_file)?;
    let key = load_key(key_file)?;
    let signer = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Key {
            path: key_file.to_path_buf(),
            message: e.to_string(),
        })?;
    let ck = CertifiedKey::new(chain, signer);
    ck.keys_match().map_err(|_| TlsError::Mismatch {
        key: key_file.to_path_buf(),
        cert: cert_file.to_path_buf(),
    })?;
    Ok(Arc::new(ck))
}

/// A root store from a CA bundle file.
pub fn root_store(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            message: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

/// The DNS names a leaf certificate answers to: its DNS SANs, or its common
/// name when it has none. Lowercase; wildcards kept as `*.example.com`.
pub fn dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let Ok((_, x509)) = X509Certificate::from_der(cert.as_ref()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = match x509.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        names = x509
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok().map(str::to_ascii_lowercase))
            .collect();
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    fn self_signed(names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let c = rcgen::generate_simple_self_signed(names).expect("rcgen");
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    #[test]
    fn loads_a_matching_pair_and_reads_its_names() {
        let dir = tempfile::tempdir().expect("tmp");
        let (cert, key) = self_signed(&["api.example.com", "*.example.org"]);
        let cert_file = write(dir.path(), "c.pem", &cert);
        let key_file = write(dir.path(), "k.pem", &key);
        let ck = certified_key(&cert_file, &key_file).expect("pair loads");
        assert_eq!(
            dns_names(&ck.cert[0]),
            vec!["api.example.com".to_string(), "*.example.org".to_string()]
        );
    }

    #[test]
    fn names_the_file_for_each_kind_of_mistake() {
        let dir = tempfile::tempdir().expect("tmp");
        let (cert, key) = self_signed(&["a.test"]);
        let (_, other_key) = self_signed(&["b.test"]);
        let cert_file = write(dir.path(), "c.pem", &cert);
        let mismatch = certified_key(&cert_file, &write(dir.path(), "other.pem", &other_key))
            .expect_err("mismatch");
        assert!(matches!(mismatch, TlsError::Mismatch { .. }), "{mismatch}");
        let missing = certified_key(
            &dir.path().join("nope.pem"),
            &write(dir.path(), "k.pem", &key),
        )
        .expect_err("missing");
        assert!(missing.to_string().contains("nope.pem"), "{missing}");
        let not_pem = certified_key(
            &write(dir.path(), "junk.pem", "hello"),
            &dir.path().join("k.pem"),
        )
        .expect_err("junk");
        assert!(matches!(not_pem, TlsError::NoCertificate(_)), "{not_pem}");
        let key_as_cert = certified_key(&cert_file, &write(dir.path(), "cert-as-key.pem", &cert))
            .expect_err("cert given as key");
        assert!(matches!(key_as_cert, TlsError::Key { .. }), "{key_as_cert}");
    }
}
