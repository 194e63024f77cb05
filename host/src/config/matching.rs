//! What a route's match can require besides host and `{param}` paths:
//! a regex path, and header and query-parameter conditions (a value, its
//! presence or absence, or a regex).

/// A route's path condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// `/a/{id}/*`: compiled into the route trie.
    Pattern(super::PathPattern),
    /// `path_regex`: tried after every trie route of the same host.
    Regex(PathRegex),
}

impl PathMatch {
    /// The pattern or regex as written.
    pub fn raw(&self) -> &str {
        match self {
            Self::Pattern(p) => &p.raw,
            Self::Regex(r) => r.regex.as_str(),
        }
    }

    /// Names a rewrite template may use: `{param}`s and the tail, or the
    /// regex's named captures, in the order [`crate::router::Params`] holds them.
    pub fn param_names(&self) -> Vec<&str> {
        match self {
            Self::Pattern(p) => p.param_names(),
            Self::Regex(r) => r.names.iter().map(String::as_str).collect(),
        }
    }
}

/// A path regex, anchored at both ends (the whole path must match, as
/// Envoy's `safe_regex` does), with its named captures.
#[derive(Debug, Clone)]
pub struct PathRegex {
    /// The compiled `^(?:...)$`.
    pub regex: regex::Regex,
    /// What was written in the config.
    pub source: String,
    /// Named capture groups, in the regex's order.
    pub names: Vec<String>,
}

impl PartialEq for PathRegex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for PathRegex {}

/// A condition on one header or query parameter.
#[derive(Debug, Clone)]
pub enum ValueMatch {
    /// One of the values equals this (query values are compared decoded).
    Exact(String),
    /// Present, whatever its value (`{ present: true }`).
    Present,
    /// Not present at all (`{ present: false }`).
    Absent,
    /// One of the values matches this regex in full (`{ regex: "v[0-9]+" }`).
    Regex(regex::Regex),
}

impl ValueMatch {
    /// Whether the values found (none when absent) satisfy the condition.
    pub fn accepts<V: AsRef<[u8]>>(&self, mut values: impl Iterator<Item = V>) -> bool {
        match self {
            Self::Exact(want) => values.any(|v| v.as_ref() == want.as_bytes()),
            Self::Present => values.next().is_some(),
            Self::Absent => values.next().is_none(),
            Self::Regex(re) => {
                values.any(|v| std::str::from_utf8(v.as_ref()).is_ok_and(|v| re.is_match(v)))
            }
        }
    }
}

impl PartialEq for ValueMatch {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Exact(a), Self::Exact(b)) => a == b,
            (Self::Present, Self::Present) | (Self::Absent, Self::Absent) => true,
            (Self::Regex(a), Self::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl Eq for ValueMatch {}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals<'a>(v: &'a [&'a str]) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        v.iter().map(|s| s.as_bytes())
    }

    #[test]
    fn value_conditions() {
        let exact = ValueMatch::Exact("2".into());
        assert!(exact.accepts(vals(&["1", "2"])));
        assert!(!exact.accepts(vals(&["22"])));
        assert!(!exact.accepts(vals(&[])));
        assert!(ValueMatch::Present.accepts(vals(&[""])));
        assert!(!ValueMatch::Present.accepts(vals(&[])));
        assert!(ValueMatch::Absent.accepts(vals(&[])));
        assert!(!ValueMatch::Absent.accepts(vals(&["x"])));
        let re = ValueMatch::Regex(regex::Regex::new("^(?:v[0-9]+)$").unwrap());
        assert!(re.accepts(vals(&["beta", "v12"])));
        assert!(!re.accepts(vals(&["v1x"])));
        assert!(!re.accepts(vals(&[])));
    }
}
