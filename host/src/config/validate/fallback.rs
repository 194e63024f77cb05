//! Validation of `fallback` blocks (on routes and services): a static
//! response or another service, never both.

use std::collections::HashMap;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};

use super::Errors;
use crate::config::raw::*;
use crate::config::{Fallback, FallbackAnswer};

/// `fallback` at `path`; `own` is the service the block belongs to (a
/// service cannot fall back on itself).
pub(super) fn fallback(
    f: &RawFallback,
    path: &str,
    services: &HashMap<String, usize>,
    own: Option<&str>,
    errs: &mut Errors,
) -> Option<Fallback> {
    let before = errs.len();
    let answer = match (&f.service, f.status) {
        (Some(name), None) => {
            if !f.headers.is_empty() || f.body.is_some() {
                errs.push(
                    path.to_string(),
                    "`headers` and `body` belong to a static fallback (`status`), not to `service`",
                );
            }
            if own == Some(name.as_str()) {
                errs.push(
                    format!("{path}.service"),
                    "a service cannot be its own fallback",
                );
            }
            match services.get(name) {
                Some(&i) => Some(FallbackAnswer::Service(i)),
                None => {
                    errs.push(
                        format!("{path}.service"),
                        format!("unknown service \"{name}\""),
                    );
                    None
                }
            }
        }
        (None, Some(code)) => static_answer(f, code, path, errs),
        (Some(_), Some(_)) => {
            errs.push(
                path.to_string(),
                "set either `status` (a static answer) or `service`, not both",
            );
            None
        }
        (None, None) => {
            errs.push(
                path.to_string(),
                "set `status` (a static answer) or `service`",
            );
            None
        }
    };
    let on_status = f
        .on_status
        .iter()
        .enumerate()
        .filter_map(|(i, &c)| match StatusCode::from_u16(c) {
            Ok(s) if s.is_server_error() => Some(s),
            _ => {
                errs.push(
                    format!("{path}.on_status[{i}]"),
                    format!("`{c}`: expected a 5xx status"),
                );
                None
            }
        })
        .collect();
    if errs.len() > before {
        return None;
    }
    Some(Fallback {
        answer: answer?,
        on_status,
    })
}

fn static_answer(
    f: &RawFallback,
    code: u16,
    path: &str,
    errs: &mut Errors,
) -> Option<FallbackAnswer> {
    let status = match StatusCode::from_u16(code) {
        Ok(s) if (200..600).contains(&code) => s,
        _ => {
            errs.push(
                format!("{path}.status"),
                format!("`{code}`: expected a status from 200 to 599"),
            );
            return None;
        }
    };
    let mut headers = Vec::with_capacity(f.headers.len());
    for (k, v) in &f.headers {
        match (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            (Ok(name), Ok(value)) if !is_framing(&name) => headers.push((name, value)),
            (Ok(_), Ok(_)) => errs.push(
                format!("{path}.headers.{k}"),
                "set by the gateway from the body; leave it out",
            ),
            _ => errs.push(
                format!("{path}.headers.{k}"),
                "not a valid header name and value",
            ),
        }
    }
    Some(FallbackAnswer::Static {
        status,
        headers,
        body: Bytes::from(f.body.clone().unwrap_or_default()),
    })
}

/// Headers a fixed body's framing decides.
fn is_framing(name: &HeaderName) -> bool {
    name == http::header::CONTENT_LENGTH || name == http::header::TRANSFER_ENCODING
}
