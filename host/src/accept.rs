//! Accept: the stage after the listener that turns what the client sent into
//! the one canonical request every later stage sees: the authority checked
//! and chosen, the path canonicalised, identity headers only the gateway may
//! set removed. Nothing downstream re-parses the raw path or trusts a client's
//! identity header.

pub mod path;

use http::header::{self, HeaderName, HeaderValue};
use http::{Uri, Version};

pub use path::{EscapedSlashes, PathError};

/// The ingress rules of one snapshot.
#[derive(Debug, Clone, Default)]
pub struct Ingress {
    /// What `%2F`, `%5C` and `\` in a path get.
    pub escaped_slashes: EscapedSlashes,
    /// Headers removed from every request before routing: what plugins
    /// declared as identity, the TLS client-certificate header, and the
    /// operator's `strip_request_headers`. Sorted, without duplicates.
    pub strip: Vec<HeaderName>,
}

/// Why a request was refused at ingress (always 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The path has no canonical form.
    #[error(transparent)]
    Path(#[from] PathError),
    /// More than one `Host` header.
    #[error("more than one Host header")]
    TwoHosts,
    /// HTTP/1.1 without `Host`.
    #[error("HTTP/1.1 request without a Host header")]
    NoHost,
    /// An HTTP/2 `host` header naming another authority than `:authority`.
    #[error("the Host header disagrees with :authority")]
    HostMismatch,
    /// `user@` in the request target's authority.
    #[error("userinfo in the request target")]
    UserInfo,
}

impl RequestError {
    /// The stable error code for the response body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Path(_) => "invalid_path",
            Self::TwoHosts | Self::NoHost | Self::HostMismatch | Self::UserInfo => "invalid_host",
        }
    }
}

/// Makes `parts` canonical in place, or says why it cannot be.
pub fn canonicalize(rules: &Ingress, parts: &mut http::request::Parts) -> Result<(), RequestError> {
    authority(parts)?;
    let canonical = path::canonicalize(parts.uri.path(), rules.escaped_slashes)?;
    if let std::borrow::Cow::Owned(p) = canonical {
        parts.uri = with_path(&parts.uri, p)?;
    }
    for name in &rules.strip {
        parts.headers.remove(name);
    }
    Ok(())
}

/// One authority per request (RFC 9112 §3.2, RFC 9113 §8.3.1): a request
/// target in absolute form wins over `Host` and replaces it, so that routing
/// and the upstream agree on the host.
fn authority(parts: &mut http::request::Parts) -> Result<(), RequestError> {
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(RequestError::TwoHosts);
    }
    let Some(auth) = parts.uri.authority() else {
        return match (host, parts.version) {
            (None, Version::HTTP_11) => Err(RequestError::NoHost),
            _ => Ok(()),
        };
    };
    if auth.as_str().contains('@') {
        return Err(RequestError::UserInfo);
    }
    let same = host.is_some_and(|h| h.as_bytes().eq_ignore_ascii_case(auth.as_str().as_bytes()));
    match parts.version {
        Version::HTTP_2 | Version::HTTP_3 if host.is_some() && !same => {
            return Err(RequestError::HostMismatch);
        }
        Version::HTTP_2 | Version::HTTP_3 => {}
        _ if !same => {
            if let Ok(v) = HeaderValue::from_str(auth.as_str()) {
                parts.headers.insert(header::HOST, v);
            }
        }
        _ => {}
    }
    Ok(())
}

/// `uri` with its path replaced by the canonical one (query kept as sent).
fn with_path(uri: &Uri, path: String) -> Result<Uri, RequestError> {
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(pq.parse().map_err(|_| PathError::BadEscape)?);
    Uri::from_parts(parts).map_err(|_| RequestError::Path(PathError::BadEscape))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(version: Version, uri: &str, hosts: &[&str]) -> http::request::Parts {
        let mut b = http::Request::builder().version(version).uri(uri);
        for h in hosts {
            b = b.header(header::HOST, *h);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn absolute_form_wins_over_host() {
        let mut p = parts(
            Version::HTTP_11,
            "http://api.example.com/x",
            &["evil.example"],
        );
        canonicalize(&Ingress::default(), &mut p).unwrap();
        assert_eq!(p.headers[header::HOST], "api.example.com");
    }

    #[test]
    fn host_rules() {
        let rules = Ingress::default();
        let mut two = parts(Version::HTTP_11, "/x", &["a", "b"]);
        assert_eq!(canonicalize(&rules, &mut two), Err(RequestError::TwoHosts));
        let mut none = parts(Version::HTTP_11, "/x", &[]);
        assert_eq!(canonicalize(&rules, &mut none), Err(RequestError::NoHost));
        let mut old = parts(Version::HTTP_10, "/x", &[]);
        assert_eq!(canonicalize(&rules, &mut old), Ok(()));
        let mut h2 = parts(Version::HTTP_2, "https://a.example/x", &["b.example"]);
        assert_eq!(
            canonicalize(&rules, &mut h2),
            Err(RequestError::HostMismatch)
        );
        let mut h2 = parts(Version::HTTP_2, "https://a.example/x", &["A.example"]);
        assert_eq!(canonicalize(&rules, &mut h2), Ok(()));
        let mut user = parts(Version::HTTP_11, "http://u@a.example/x", &["a.example"]);
        assert_eq!(canonicalize(&rules, &mut user), Err(RequestError::UserInfo));
    }

    #[test]
    fn path_is_rewritten_and_query_kept() {
        let mut p = parts(Version::HTTP_11, "/static/%2e%2e/admin?q=%2e%2e&x", &["a"]);
        canonicalize(&Ingress::default(), &mut p).unwrap();
        assert_eq!(p.uri.path(), "/admin");
        assert_eq!(p.uri.query(), Some("q=%2e%2e&x"));
    }

    #[test]
    fn identity_headers_are_stripped() {
        let rules = Ingress {
            strip: vec![HeaderName::from_static("x-consumer-id")],
            ..Ingress::default()
        };
        let mut p = parts(Version::HTTP_11, "/x", &["a"]);
        p.headers
            .insert("x-consumer-id", HeaderValue::from_static("alice"));
        p.headers
            .append("x-consumer-id", HeaderValue::from_static("bob"));
        canonicalize(&rules, &mut p).unwrap();
        assert!(!p.headers.contains_key("x-consumer-id"));
    }
}
