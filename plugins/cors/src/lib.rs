//! `cors`: Cross-Origin Resource Sharing at the gateway. Preflight `OPTIONS`
//! requests are answered here (204) without reaching the upstream; actual
//! requests from allowed origins get the CORS response headers. Disallowed
//! origins get no CORS headers at all, so the browser blocks them.

use gatehouse_plugin_sdk::*;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Exact origins (`https://app.example.com`), wildcard subdomains
    /// (`https://*.example.com`), or `*` for any origin.
    origins: Vec<String>,
    /// Methods allowed cross-origin (default GET, HEAD, POST).
    #[serde(default)]
    methods: Vec<String>,
    /// Request headers allowed; empty reflects what the preflight asks for.
    #[serde(default)]
    headers: Vec<String>,
    /// Response headers the browser may read.
    #[serde(default)]
    exposed_headers: Vec<String>,
    /// Allow cookies and credentials (never combined with a literal `*`).
    #[serde(default)]
    credentials: bool,
    /// How long a preflight answer may be cached, in seconds (default 600).
    max_age: Option<u64>,
}

/// One allowed origin.
#[derive(Debug)]
enum Origin {
    Any,
    Exact(String),
    /// Scheme + `://` and the parent domain with its leading dot (`.example.com`).
    Subdomains {
        scheme: String,
        suffix: String,
    },
}

impl Origin {
    fn parse(s: &str) -> Result<Self, String> {
        if s == "*" {
            return Ok(Self::Any);
        }
        // Sandboxed iframes, `file:` pages and some redirects send `Origin:
        // null`; any page can make itself one, so it is allowed only by name.
        if s == "null" {
            return Ok(Self::Exact(s.into()));
        }
        let Some((scheme, host)) = s.split_once("://") else {
            return Err(format!(
                "origin `{s}` needs a scheme, like https://app.example.com"
            ));
        };
        if s.ends_with('/') {
            return Err(format!("origin `{s}` must not end with `/`"));
        }
        match host.strip_prefix("*.") {
            Some(parent) if !parent.is_empty() && !parent.contains('*') => Ok(Self::Subdomains {
                scheme: format!("{scheme}://"),
                suffix: format!(".{}", parent.to_ascii_lowercase()),
            }),
            _ if host.contains('*') => Err(format!("origin `{s}`: `*` only as `*.domain`")),
            _ => Ok(Self::Exact(s.to_ascii_lowercase())),
        }
    }

    fn matches(&self, origin: &str) -> bool {
        match self {
            Self::Any => origin != "null",
            Self::Exact(o) => o.eq_ignore_ascii_case(origin),
            Self::Subdomains { scheme, suffix } => {
                let o = origin.to_ascii_lowercase();
                o.strip_prefix(scheme.as_str()).is_some_and(|host| {
                    host.len() > suffix.len() && host.ends_with(suffix.as_str())
                })
            }
        }
    }
}

struct Cors {
    origins: Vec<Origin>,
    any: bool,
    methods: Vec<String>,
    methods_value: String,
    headers_value: Option<String>,
    exposed_value: Option<String>,
    credentials: bool,
    max_age: String,
}

impl Cors {
    fn allowed(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o.matches(origin))
    }

    /// The `Access-Control-Allow-Origin` value: `*` for any-origin (never
    /// with credentials: a config error); otherwise the origin itself (hence
    /// `Vary: Origin`).
    fn allow_origin<'a>(&self, origin: &'a str) -> &'a str {
        if self.any { "*" } else { origin }
    }

    fn preflight(&self, req: &Request, origin: &str) -> Response {
        let mut r = Response::new(204).header(
            "vary",
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        );
        let method = req
            .header_str("access-control-request-method")
            .unwrap_or_default();
        if !self.allowed(origin) || !self.methods.iter().any(|m| m.eq_ignore_ascii_case(&method)) {
            return r;
        }
        r = r
            .header("access-control-allow-origin", self.allow_origin(origin))
            .header("access-control-allow-methods", &self.methods_value)
            .header("access-control-max-age", &self.max_age);
        let asked = req.header_str("access-control-request-headers");
        if let Some(h) = self.headers_value.as_deref().or(asked.as_deref()) {
            r = r.header("access-control-allow-headers", h);
        }
        if self.credentials {
            r = r.header("access-control-allow-credentials", "true");
        }
        r
    }
}

fn is_preflight(req: &Request) -> bool {
    req.method().eq_ignore_ascii_case("OPTIONS")
        && req.header("access-control-request-method").is_some()
}

impl Plugin for Cors {
    type Config = Config;

    fn new(c: Config) -> Result<Self, String> {
        if c.origins.is_empty() {
            return Err("`origins` must list at least one origin (or \"*\")".into());
        }
        let origins = c
            .origins
            .iter()
            .map(|o| Origin::parse(o))
            .collect::<Result<Vec<_>, _>>()?;
        let any = origins.iter().any(|o| matches!(o, Origin::Any));
        if any && c.credentials {
            // Browsers refuse `*` with credentials; reflecting every origin
            // instead would hand any site the user's cookies.
            return Err(
                "`origins: [\"*\"]` cannot be combined with `credentials: true`: list the origins that may send credentials".into(),
            );
        }
        let methods: Vec<String> = if c.methods.is_empty() {
            vec!["GET".into(), "HEAD".into(), "POST".into()]
        } else {
            c.methods.iter().map(|m| m.to_ascii_uppercase()).collect()
        };
        let join = |v: &[String]| (!v.is_empty()).then(|| v.join(", "));
        Ok(Cors {
            any,
            origins,
            methods_value: methods.join(", "),
            methods,
            headers_value: join(&c.headers),
            exposed_value: join(&c.exposed_headers),
            credentials: c.credentials,
            max_age: c.max_age.unwrap_or(600).to_string(),
        })
    }

    fn features(&self) -> Features {
        Features::RESPONSE_HEADERS
    }

    fn on_request(&self, _ctx: &Context, req: &Request) -> Action {
        match req.header_str("origin") {
            Some(origin) if is_preflight(req) => self.preflight(req, &origin).into(),
            _ => Action::Continue,
        }
    }

    fn on_response(&self, _ctx: &Context, req: &Request, resp: &ResponseHeadRef) -> ResponseAction {
        // A preflight's answer was built whole by `preflight`.
        let Some(origin) = req.header_str("origin").filter(|_| !is_preflight(req)) else {
            return ResponseAction::Continue;
        };
        if !self.any || self.credentials {
            resp.append_header("vary", b"Origin");
        }
        if !self.allowed(&origin) {
            return ResponseAction::Continue;
        }
        resp.set_header(
            "access-control-allow-origin",
            self.allow_origin(&origin).as_bytes(),
        );
        if self.credentials {
            resp.set_header("access-control-allow-credentials", b"true");
        }
        if let Some(e) = &self.exposed_value {
            resp.set_header("access-control-expose-headers", e.as_bytes());
        }
        ResponseAction::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let sub = Origin::parse("https://*.example.com").unwrap();
        assert!(sub.matches("https://app.example.com"));
        assert!(sub.matches("https://a.b.example.com"));
        assert!(!sub.matches("https://example.com"));
        assert!(!sub.matches("https://evilexample.com"));
        assert!(!sub.matches("http://app.example.com"));
        assert!(
            Origin::parse("https://app.example.com")
                .unwrap()
                .matches("https://APP.example.com")
        );
        assert!(Origin::parse("app.example.com").is_err());
        assert!(Origin::parse("https://a*.example.com").is_err());
        assert!(
            !Origin::parse("*").unwrap().matches("null"),
            "null only by name"
        );
        assert!(Origin::parse("null").unwrap().matches("null"));
    }
}

export_plugin!(Cors);
