//! Real certificates for TLS tests: a CA generated per test, leaf certificates
//! for server names and clients, and a TLS client that reports what it was served.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, SanType,
};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A certificate authority that issues into a directory.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub dir: PathBuf,
    pub ca_file: PathBuf,
    ca_der: CertificateDer<'static>,
}

/// Paths of an issued certificate and key.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestCa {
    /// A new CA named `name`, writing `<name>-ca.pem` into `dir`.
    pub fn new(dir: &Path, name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = dn(&format!("{name} test CA"));
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let ca_file = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca_file, cert.pem()).unwrap();
        Self {
            ca_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
            dir: dir.to_path_buf(),
            ca_file,
        }
    }

    /// A server certificate for `names` with common name `cn`, written as `<file>.pem` / `<file>.key`.
    pub fn server(&self, file: &str, cn: &str, names: &[&str]) -> Issued {
        self.issue(file, cn, names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate with common name `cn` and a URI SAN.
    pub fn client(&self, file: &str, cn: &str, uri: &str) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn(cn);
        params.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(file, params)
    }

    fn issue(
        &self,
        file: &str,
        cn: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> Issued {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name = dn(cn);
        params.extended_key_usages = vec![usage];
        self.sign(file, params)
    }

    fn sign(&self, file: &str, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let cert_file = self.dir.join(format!("{file}.pem"));
        let key_file = self.dir.join(format!("{file}.key"));
        // Write-then-rename, as certificate tooling does on renewal.
        for (path, text) in [(&key_file, key.serialize_pem()), (&cert_file, cert.pem())] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
        Issued {
            cert_file,
            key_file,
        }
    }

    /// A TLS client trusting this CA, offering `alpn`, optionally with a client certificate.
    pub fn connector(&self, alpn: &[&str], client: Option<&Issued>) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut cfg = match client {
            Some(c) => {
                let chain = gatehouse::pem::load_certs(&c.cert_file).unwrap();
                let key = gatehouse::pem::load_key(&c.key_file).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        cfg.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        // Every connection does a full handshake, so each one shows the
        // certificate being served now (a resumed session reports the old one).
        cfg.resumption = rustls::client::Resumption::disabled();
        TlsConnector::from(Arc::new(cfg))
    }
}

/// A server-side acceptor for `issued` (for HTTPS upstreams), optionally
/// requiring client certificates from `client_ca`.
pub fn acceptor(issued: &Issued, client_ca: Option<&Path>) -> tokio_rustls::TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let roots = Arc::new(gatehouse::pem::root_store(ca).unwrap());
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider)
                .build()
                .unwrap();
            builder.with_client_cert_verifier(v)
        }
        None => builder.with_no_client_auth(),
    };
    let chain = gatehouse::pem::load_certs(&issued.cert_file).unwrap();
    let key = gatehouse::pem::load_key(&issued.key_file).unwrap();
    let mut cfg = builder.with_single_cert(chain, key).unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// Opens a TLS connection to `addr` with SNI `sni`.
pub async fn connect(
    connector: &TlsConnector,
    addr: SocketAddr,
    sni: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    connector.connect(name, tcp).await
}

/// The common name of the certificate the server presented.
pub fn served_cn(stream: &TlsStream<TcpStream>) -> String {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let certs = stream.get_ref().1.peer_certificates().unwrap();
    let (_, x509) = X509Certificate::from_der(certs[0].as_ref()).unwrap();
    x509.subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

/// Sends one GET over an established TLS stream, HTTP/2 if ALPN chose it.
/// Returns (HTTP version, status, body).
pub async fn get_over(
    stream: TlsStream<TcpStream>,
    authority: &str,
    path: &str,
) -> Result<(Version, u16, String), String> {
    get_with(stream, authority, path, &[]).await
}

/// Like [`get_over`], with extra request headers.
pub async fn get_with(
    stream: TlsStream<TcpStream>,
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(Version, u16, String), String> {
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(stream);
    let uri = format!("https://{authority}{path}");
    let resp = if h2 {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = Request::get(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::new())).unwrap();
        send.send_request(req).await.map_err(|e| e.to_string())?
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = Request::get(path).header("host", authority);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::new())).unwrap();
        send.send_request(req).await.map_err(|e| e.to_string())?
    };
    let version = resp.version();
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((version, status, String::from_utf8_lossy(&body).into_owned()))
}
