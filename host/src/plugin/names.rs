//! Header names a plugin instance has set before, parsed once.
//!
//! Plugins set the same few names on every request (`RateLimit-Limit`,
//! `x-consumer-id`), and parsing a name that is not a standard header, or is
//! not lowercase, allocates its lowercase form each time. An instance's list
//! is small and searched by exact bytes, which costs less than one parse.

use http::HeaderName;
use http::header::InvalidHeaderName;

/// Names kept per instance; a plugin that invents names per request (a bug,
/// or names carrying data) parses the rest as before.
const MAX_NAMES: usize = 32;

/// An instance's parsed header names, by the exact string the guest sent.
#[derive(Debug, Default)]
pub struct HeaderNames {
    seen: Vec<(Box<str>, HeaderName)>,
}

impl HeaderNames {
    /// `name` parsed, from the list when the guest sent the same string before.
    pub fn parse(&mut self, name: &str) -> Result<HeaderName, InvalidHeaderName> {
        if let Some((_, parsed)) = self.seen.iter().find(|(s, _)| **s == *name) {
            return Ok(parsed.clone());
        }
        let parsed = HeaderName::from_bytes(name.as_bytes())?;
        if self.seen.len() < MAX_NAMES {
            self.seen.push((name.into(), parsed.clone()));
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_parsed_once_and_found_again() {
        let mut names = HeaderNames::default();
        let first = names.parse("RateLimit-Limit").unwrap();
        assert_eq!(first.as_str(), "ratelimit-limit");
        assert_eq!(names.parse("RateLimit-Limit").unwrap(), first);
        assert_eq!(names.seen.len(), 1);
        // Another spelling is another entry, with the same parsed name.
        assert_eq!(names.parse("ratelimit-limit").unwrap(), first);
        assert_eq!(names.seen.len(), 2);
    }

    #[test]
    fn invalid_names_are_refused_and_not_kept() {
        let mut names = HeaderNames::default();
        assert!(names.parse("bad name").is_err());
        assert!(names.parse("").is_err());
        assert!(names.seen.is_empty());
    }

    #[test]
    fn the_list_stops_growing_at_its_cap() {
        let mut names = HeaderNames::default();
        for i in 0..MAX_NAMES + 10 {
            let n = format!("x-name-{i}");
            assert_eq!(names.parse(&n).unwrap().as_str(), n);
        }
        assert_eq!(names.seen.len(), MAX_NAMES);
    }
}
