//! Reading and removing query parameters and cookies, for plugins that take a
//! credential from them and must not forward it.

/// The first value of query parameter `name` in `query` (no `?`), as sent
/// (not percent-decoded: tokens and keys are URL-safe).
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// `query` without any `name` parameter; `None` when nothing is left.
pub fn query_without(query: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty() && pair.split_once('=').map_or(*pair, |(k, _)| k) != name)
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

/// The value of cookie `name` in a `Cookie` header value.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// A `Cookie` header value without cookie `name`; `None` when nothing is left.
pub fn cookie_without(header: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = header
        .split(';')
        .map(str::trim)
        .filter(|c| !c.is_empty() && c.split_once('=').map_or(*c, |(k, _)| k) != name)
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// Whether a body with these `Content-Type` and `Content-Encoding` values is
/// JSON a plugin can read as it is (JSON type, no encoding but `identity`).
pub fn is_plain_json(content_type: Option<&str>, content_encoding: Option<&str>) -> bool {
    let json = content_type.is_some_and(|t| t.to_ascii_lowercase().contains("json"));
    let plain = content_encoding.is_none_or(|e| e.trim().eq_ignore_ascii_case("identity"));
    json && plain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params() {
        assert_eq!(query_param("a=1&key=s3cret&b", "key"), Some("s3cret"));
        assert_eq!(query_param("a=1", "key"), None);
        assert_eq!(
            query_without("a=1&key=s3cret&b", "key").as_deref(),
            Some("a=1&b")
        );
        assert_eq!(query_without("key=x", "key"), None);
        assert_eq!(query_without("keys=x", "key").as_deref(), Some("keys=x"));
    }

    #[test]
    fn plain_json() {
        assert!(is_plain_json(Some("application/json; charset=utf-8"), None));
        assert!(is_plain_json(
            Some("application/problem+json"),
            Some("identity")
        ));
        assert!(!is_plain_json(Some("application/json"), Some("gzip")));
        assert!(!is_plain_json(Some("text/plain"), None));
        assert!(!is_plain_json(None, None));
    }

    #[test]
    fn cookies() {
        assert_eq!(cookie("a=1; token=abc.def; b=2", "token"), Some("abc.def"));
        assert_eq!(cookie("a=1", "token"), None);
        assert_eq!(
            cookie_without("a=1; token=abc.def; b=2", "token").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(cookie_without("token=x", "token"), None);
    }
}
