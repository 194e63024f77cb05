//! The identity of a verified client certificate (mTLS), as plugins and the
//! upstream see it.

use http::HeaderValue;
use rustls::pki_types::CertificateDer;

/// Subject and SANs of a client certificate the listener verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The subject distinguished name (`CN=client-a, O=Example`).
    pub subject: String,
    /// SANs as `DNS:name`, `URI:spiffe://...`, `IP:10.0.0.1`, `Email:a@b`.
    pub sans: Vec<String>,
}

impl PeerIdentity {
    /// Reads the leaf certificate; `None` if it cannot be parsed (rustls
    /// verified it, so this does not happen in practice).
    pub fn from_cert(cert: &CertificateDer<'_>) -> Option<Self> {
        use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
        let (_, x509) = X509Certificate::from_der(cert.as_ref()).ok()?;
        let sans = match x509.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(format!("DNS:{d}")),
                    GeneralName::URI(u) => Some(format!("URI:{u}")),
                    GeneralName::RFC822Name(e) => Some(format!("Email:{e}")),
                    GeneralName::IPAddress(b) => ip(b).map(|ip| format!("IP:{ip}")),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        Some(Self {
            subject: x509.subject().to_string(),
            sans,
        })
    }

    /// SANs joined with `,` (the `tls.client.san` attribute).
    pub fn san_list(&self) -> String {
        self.sans.join(",")
    }

    /// The forwarded header's value, in the shape of Envoy's
    /// `x-forwarded-client-cert`: `Subject="...";DNS=a;URI=b`.
    pub fn header_value(&self) -> Option<HeaderValue> {
        let mut v = format!("Subject=\"{}\"", self.subject.replace('"', "\\\""));
        for san in &self.sans {
            if let Some((kind, value)) = san.split_once(':') {
                v.push(';');
                v.push_str(kind);
                v.push('=');
                v.push_str(value);
            }
        }
        HeaderValue::from_str(&v).ok()
    }
}

fn ip(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}
