//! `${NAME}` and `${NAME:-default}` substitution, applied to the raw text before parsing.

use super::ConfigError;

/// Replaces every `${NAME}` with the environment variable's value; `${NAME:-x}`
/// falls back to `x`. An unset variable without a default is an error, so that a
/// missing secret is never silently an empty string. `$${` escapes to `${`.
pub fn substitute(text: &str) -> Result<String, ConfigError> {
    substitute_with(text, |name| std::env::var(name).ok())
}

fn substitute_with(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("${") {
        if rest[..pos].ends_with('$') {
            out.push_str(&rest[..pos - 1]);
            out.push_str("${");
            rest = &rest[pos + 2..];
            continue;
        }
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| ConfigError::new("", "unterminated `${` in config"))?;
        let expr = &after[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (expr, None),
        };
        let valid =
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(ConfigError::new(
                "",
                format!("invalid environment variable name `{name}` in `${{{expr}}}`"),
            ));
        }
        match (lookup(name), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(ConfigError::new(
                    "",
                    format!(
                        "environment variable `{name}` is not set (use `${{{name}:-default}}` for a default)"
                    ),
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "s3cret".to_string())
    }

    #[test]
    fn substitutes_set_variables_and_defaults() {
        let out = substitute_with("a: ${TOKEN}\nb: ${NOPE:-x}\nc: $${TOKEN}", env).unwrap();
        assert_eq!(out, "a: s3cret\nb: x\nc: ${TOKEN}");
    }

    #[test]
    fn unset_variable_is_an_error_naming_it() {
        let err = substitute_with("a: ${MISSING}", env).unwrap_err();
        assert!(err.message.contains("`MISSING` is not set"), "{err}");
    }

    #[test]
    fn rejects_bad_names_and_unterminated() {
        assert!(substitute_with("${a b}", env).is_err());
        assert!(substitute_with("${TOKEN", env).is_err());
    }
}
