//! The path canonicaliser: one canonical form of the request path, made once
//! at ingress, so that the router, the plugins and the upstream all see the
//! same path and no encoding can pick a different route than the one the
//! upstream serves (Envoy's `normalize_path` + `merge_slashes` +
//! `path_with_escaped_slashes_action`, nginx's URI normalisation).

use std::borrow::Cow;

/// What happens to `%2F`, `%5C` and a literal `\` in a path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EscapedSlashes {
    /// 400: an encoded separator means different things to different upstreams.
    #[default]
    Reject,
    /// Kept encoded (`%2F`, `%5C`; a literal `\` becomes `%5C`) inside its
    /// segment: the router never splits on it, the upstream decides.
    Keep,
}

/// Why a path has no canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Not an origin-form path.
    #[error("the path does not start with `/`")]
    NotAbsolute,
    /// `%` not followed by two hex digits.
    #[error("the path has a malformed percent-escape")]
    BadEscape,
    /// `%2F`, `%5C` or `\` under [`EscapedSlashes::Reject`].
    #[error("the path has an encoded `/` or a backslash")]
    EscapedSlash,
    /// NUL or another control byte, encoded or not.
    #[error("the path has a control character")]
    ControlByte,
    /// `..` past the first segment.
    #[error("the path climbs above the root")]
    AboveRoot,
}

/// The canonical form of `path` (no query): percent-encoded unreserved
/// characters decoded (RFC 3986 §6.2.2.2), the hex of the escapes that remain
/// uppercased, `.` and `..` segments resolved after decoding, repeated slashes
/// merged. A path already in canonical form is borrowed, not copied.
pub fn canonicalize(path: &str, slashes: EscapedSlashes) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if is_canonical(bytes, slashes) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode(bytes, slashes)?;
    resolve(&decoded).map(Cow::Owned)
}

/// One pass: the path is what [`canonicalize`] would make of it (escapes
/// only of characters that stay encoded, in uppercase hex; no backslash,
/// control byte, empty or dot segment).
fn is_canonical(bytes: &[u8], slashes: EscapedSlashes) -> bool {
    let mut prev = 0u8;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let upper =
                    |c: Option<&u8>| c.is_some_and(|c| matches!(c, b'0'..=b'9' | b'A'..=b'F'));
                if !upper(bytes.get(i + 1)) || !upper(bytes.get(i + 2)) {
                    return false;
                }
                let byte = hex(bytes[i + 1]).unwrap_or(0) << 4 | hex(bytes[i + 2]).unwrap_or(0);
                let stays = match byte {
                    0..=0x1f | 0x7f => false,
                    b'/' | b'\\' => slashes == EscapedSlashes::Keep,
                    _ => !is_unreserved(byte),
                };
                if !stays {
                    return false;
                }
                i += 2;
            }
            b'\\' | 0..=0x20 | 0x7f..=0xff => return false,
            b'/' if prev == b'/' => return false,
            b'.' if prev == b'/' => {
                let rest = &bytes[i..];
                let seg = rest.split(|&c| c == b'/').next().unwrap_or(rest);
                if seg == b"." || seg == b".." {
                    return false;
                }
            }
            _ => {}
        }
        prev = b;
        i += 1;
    }
    true
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn push_escape(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 0xf)] as char);
}

/// Decodes unreserved escapes and normalises the others; checks every byte.
fn decode(bytes: &[u8], slashes: EscapedSlashes) -> Result<String, PathError> {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        let (byte, escaped) = if b == b'%' {
            let h = bytes.get(i).copied().and_then(hex);
            let l = bytes.get(i + 1).copied().and_then(hex);
            let (Some(h), Some(l)) = (h, l) else {
                return Err(PathError::BadEscape);
            };
            i += 2;
            (h << 4 | l, true)
        } else {
            (b, false)
        };
        match byte {
            0..=0x1f | 0x7f => return Err(PathError::ControlByte),
            b'/' if escaped => match slashes {
                EscapedSlashes::Reject => return Err(PathError::EscapedSlash),
                EscapedSlashes::Keep => push_escape(&mut out, byte),
            },
            b'\\' => match slashes {
                EscapedSlashes::Reject => return Err(PathError::EscapedSlash),
                EscapedSlashes::Keep => push_escape(&mut out, byte),
            },
            _ if is_unreserved(byte) => out.push(byte as char),
            b'/' => out.push('/'),
            // Sub-delimiters, `:` and `@` are allowed as they are in a path
            // (RFC 3986 §3.3); decoding them would change what they mean.
            _ if !escaped && byte.is_ascii_graphic() => out.push(byte as char),
            // Anything else (a reserved character sent encoded, a space,
            // non-ASCII bytes) stays or becomes an uppercase escape.
            _ => push_escape(&mut out, byte),
        }
    }
    Ok(out)
}

/// Merges slashes and resolves `.`/`..` (RFC 3986 §5.2.4) on a decoded path.
fn resolve(path: &str) -> Result<String, PathError> {
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing = false;
    for seg in path.split('/').skip(1) {
        trailing = false;
        match seg {
            "" => trailing = true,
            "." => trailing = true,
            ".." => {
                segments.pop().ok_or(PathError::AboveRoot)?;
                trailing = true;
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing || segments.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn canon(p: &str) -> Result<String, PathError> {
        canonicalize(p, EscapedSlashes::Reject).map(Cow::into_owned)
    }

    #[test]
    fn the_attacks_of_the_issue_resolve_or_are_refused() {
        assert_eq!(
            canon("/static/%2e%2e/api/admin/users").unwrap(),
            "/api/admin/users"
        );
        assert_eq!(canon("/static/%2E%2E/api/admin").unwrap(), "/api/admin");
        assert_eq!(canon("/static/.%2e/api/admin").unwrap(), "/api/admin");
        assert_eq!(canon("/static/../api/admin").unwrap(), "/api/admin");
        assert_eq!(canon("/api/%61dmin/users").unwrap(), "/api/admin/users");
        assert_eq!(canon("//api//admin///users").unwrap(), "/api/admin/users");
        assert_eq!(canon("/static/./x").unwrap(), "/static/x");
        assert_eq!(canon("/static/..%2fapi"), Err(PathError::EscapedSlash));
        assert_eq!(canon("/static/a%2Fb"), Err(PathError::EscapedSlash));
        assert_eq!(canon("/static/a%5cb"), Err(PathError::EscapedSlash));
        assert_eq!(canon("/static\\..\\api"), Err(PathError::EscapedSlash));
        assert_eq!(canon("/a%00b"), Err(PathError::ControlByte));
        assert_eq!(canon("/a%0d%0aX: y"), Err(PathError::ControlByte));
        assert_eq!(canon("/.."), Err(PathError::AboveRoot));
        assert_eq!(canon("/a/../../b"), Err(PathError::AboveRoot));
        assert_eq!(canon("/a/%2e%2e/%2e%2e/b"), Err(PathError::AboveRoot));
        assert_eq!(canon("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(canon("/a%4"), Err(PathError::BadEscape));
        assert_eq!(canon("*"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn reserved_escapes_stay_encoded_with_uppercase_hex() {
        assert_eq!(
            canon("/a%3fb").unwrap(),
            "/a%3Fb",
            "no second `?` from the path"
        );
        assert_eq!(canon("/a%20b").unwrap(), "/a%20b");
        assert_eq!(canon("/caf%c3%a9").unwrap(), "/caf%C3%A9");
        assert_eq!(canon("/a;b=c/@x:y").unwrap(), "/a;b=c/@x:y");
        assert_eq!(canon("/a/b/").unwrap(), "/a/b/");
        assert_eq!(canon("/a/b/..").unwrap(), "/a/");
        assert_eq!(canon("/").unwrap(), "/");
        assert_eq!(canon("/.hidden/..a").unwrap(), "/.hidden/..a");
    }

    #[test]
    fn keep_leaves_separators_encoded() {
        let keep = |p| canonicalize(p, EscapedSlashes::Keep).map(Cow::into_owned);
        assert_eq!(keep("/files/a%2fb").unwrap(), "/files/a%2Fb");
        assert_eq!(keep("/files/a\\b").unwrap(), "/files/a%5Cb");
        assert_eq!(keep("/files/..%2fetc").unwrap(), "/files/..%2Fetc");
        assert_eq!(keep("/a%00"), Err(PathError::ControlByte));
    }

    #[test]
    fn canonical_paths_are_borrowed() {
        for p in [
            "/",
            "/api/orders/42",
            "/a.b/c~d_e-f",
            "/x/",
            "/.well-known/x",
        ] {
            assert!(
                matches!(
                    canonicalize(p, EscapedSlashes::Reject),
                    Ok(Cow::Borrowed(_))
                ),
                "{p}"
            );
        }
    }

    fn path_strategy() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("/".to_string()),
            Just(".".to_string()),
            Just("..".to_string()),
            Just("%2e".to_string()),
            Just("%2E".to_string()),
            Just("%41".to_string()),
            Just("%3f".to_string()),
            Just("%c3%a9".to_string()),
            Just("%2f".to_string()),
            Just("\\".to_string()),
            "[a-zA-Z0-9._~;=@:-]{1,4}",
        ];
        proptest::collection::vec(piece, 0..12).prop_map(|v| format!("/{}", v.concat()))
    }

    proptest! {
        #[test]
        fn canonical_form_is_a_fixed_point(p in path_strategy()) {
            for mode in [EscapedSlashes::Reject, EscapedSlashes::Keep] {
                if let Ok(once) = canonicalize(&p, mode) {
                    let twice = canonicalize(&once, mode).expect("canonical input is accepted");
                    prop_assert_eq!(&*twice, &*once, "idempotent");
                    prop_assert!(matches!(twice, Cow::Borrowed(_)), "canonical is left alone");
                    prop_assert!(!once.contains("//"), "{}", once);
                    prop_assert!(once.split('/').all(|s| s != "." && s != ".."), "{}", once);
                    prop_assert!(!once.contains('\\'));
                    prop_assert!(once.starts_with('/'));
                }
            }
        }

        #[test]
        fn plain_paths_are_unchanged(segs in proptest::collection::vec("[a-z0-9_~-][a-z0-9._~-]{0,6}", 0..6)) {
            let p = format!("/{}", segs.join("/"));
            prop_assume!(p.split('/').all(|s| s != "." && s != ".."));
            prop_assert_eq!(&*canonicalize(&p, EscapedSlashes::Reject).unwrap(), p.as_str());
        }
    }
}
