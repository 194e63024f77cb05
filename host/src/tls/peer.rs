//! The identity of a verified client certificate (mTLS), as plugins and the
//! upstream see it.

use http::HeaderValue;
use rustls::pki_types::CertificateDer;

use crate::config::{CertField, ClientConsumer};

/// Subject and SANs of a client certificate the listener verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The subject distinguished name (`CN=client-a, O=Example`).
    pub subject: String,
    /// The subject's common name, when it has one.
    pub common_name: Option<String>,
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
        let common_name = x509
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string);
        Some(Self {
            subject: x509.subject().to_string(),
            common_name,
            sans,
        })
    }

    /// The consumer this certificate names under `rule`: the first value of
    /// the rule's field that passes its prefix and table.
    pub fn consumer(&self, rule: &ClientConsumer) -> Option<String> {
        let kind = match rule.from {
            CertField::Cn => return self.common_name.as_deref().and_then(|v| pick(rule, v)),
            CertField::SanUri => "URI:",
            CertField::SanDns => "DNS:",
            CertField::SanEmail => "Email:",
        };
        self.sans
            .iter()
            .filter_map(|s| s.strip_prefix(kind))
            .find_map(|v| pick(rule, v))
    }

    /// SANs joined with `,` (the `tls.client.san` attribute).
    pub fn san_list(&self) -> String {
        self.sans.join(",")
    }

    /// The forwarded header's value, in the shape of Envoy's
    /// `x-forwarded-client-cert`: `Subject="...";DNS="a";URI="b"`. Every value
    /// is quoted, with `"` and `\` escaped, so that a subject or SAN holding
    /// `;`, `,`, `=` or `"` cannot add a field or an element of its own.
    pub fn header_value(&self) -> Option<HeaderValue> {
        let mut v = String::with_capacity(64);
        push_field(&mut v, "Subject", &self.subject);
        for san in &self.sans {
            if let Some((kind, value)) = san.split_once(':') {
                v.push(';');
                push_field(&mut v, kind, value);
            }
        }
        HeaderValue::from_str(&v).ok()
    }
}

/// `value` as a consumer name under `rule`, if it names one.
fn pick(rule: &ClientConsumer, value: &str) -> Option<String> {
    let value = match &rule.strip_prefix {
        Some(p) => value
            .strip_prefix(p.as_str())
            .filter(|rest| !rest.is_empty())?,
        None => value,
    };
    match &rule.table {
        Some(t) => t.get(value).cloned(),
        None => Some(value.to_string()),
    }
}

fn push_field(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push_str("=\"");
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

fn ip(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_is_quoted_and_escaped() {
        let id = PeerIdentity {
            subject: "CN=a\";URI=spiffe://evil,O=x".into(),
            common_name: None,
            sans: vec!["URI:spiffe://t/a;DNS=evil".into(), "DNS:b\\\"c".into()],
        };
        let v = id.header_value().unwrap();
        assert_eq!(
            v.to_str().unwrap(),
            r#"Subject="CN=a\";URI=spiffe://evil,O=x";URI="spiffe://t/a;DNS=evil";DNS="b\\\"c""#
        );
    }

    #[test]
    fn a_certificate_names_a_consumer_by_its_rule() {
        let id = PeerIdentity {
            subject: "CN=billing-svc, O=Example".into(),
            common_name: Some("billing-svc".into()),
            sans: vec![
                "DNS:billing.internal".into(),
                "URI:https://example.com/x".into(),
                "URI:spiffe://prod/sa/billing".into(),
            ],
        };
        let rule = |from, strip: Option<&str>, table: Option<&[(&str, &str)]>| ClientConsumer {
            from,
            strip_prefix: strip.map(str::to_string),
            table: table.map(|t| {
                t.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            }),
        };
        let name = |r: ClientConsumer| id.consumer(&r);
        assert_eq!(
            name(rule(CertField::Cn, None, None)).as_deref(),
            Some("billing-svc")
        );
        assert_eq!(
            name(rule(CertField::SanUri, None, None)).as_deref(),
            Some("https://example.com/x"),
            "the first URI"
        );
        assert_eq!(
            name(rule(CertField::SanUri, Some("spiffe://prod/sa/"), None)).as_deref(),
            Some("billing"),
            "the first URI under the prefix"
        );
        assert_eq!(
            name(rule(CertField::SanUri, Some("spiffe://dev/"), None)),
            None
        );
        assert_eq!(
            name(rule(
                CertField::SanDns,
                None,
                Some(&[("billing.internal", "billing")])
            ))
            .as_deref(),
            Some("billing")
        );
        assert_eq!(
            name(rule(CertField::SanDns, None, Some(&[("other", "x")]))),
            None
        );
        assert_eq!(name(rule(CertField::SanEmail, None, None)), None);
        // A prefix that is the whole value leaves no name.
        assert_eq!(name(rule(CertField::Cn, Some("billing-svc"), None)), None);
    }
}
