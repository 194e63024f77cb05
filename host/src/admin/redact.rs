//! What a read-only token may see: every answer with its secrets replaced by
//! `"[redacted]"`: HMAC secrets, tokens, passwords, private keys, key hashes,
//! and the password in any URL (`redis://user:pass@host`).

use serde_json::Value;

use super::Reply;

/// Object keys whose string values are secrets, wherever they appear.
const SECRET_KEYS: &[&str] = &[
    "secret",
    "token",
    "read_token",
    "password",
    "client_secret",
    "private_key",
    "key_file",
    "hash",
    "api_key",
];

/// The replacement value.
const REDACTED: &str = "[redacted]";

/// `reply` with its JSON body redacted (other bodies are unchanged).
pub fn reply(r: Reply) -> Reply {
    if r.content_type != "application/json" {
        return r;
    }
    let Ok(mut v) = serde_json::from_slice::<Value>(&r.body) else {
        return r;
    };
    redact(&mut v);
    Reply::json(r.status, &v)
}

/// Redacts `v` in place.
pub fn redact(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                let secret = SECRET_KEYS.iter().any(|s| k.eq_ignore_ascii_case(s));
                match val {
                    Value::String(_) if secret => *val = Value::String(REDACTED.into()),
                    // `tokens: [{ name, token }]` and `secrets: [...]` lists.
                    Value::Array(items) if secret => {
                        for item in items.iter_mut().filter(|i| i.is_string()) {
                            *item = Value::String(REDACTED.into());
                        }
                        redact(val);
                    }
                    _ => redact(val),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::String(s) => {
            if let Some(clean) = url_without_password(s) {
                *s = clean;
            }
        }
        _ => {}
    }
}

/// `scheme://user:pass@host...` as `scheme://user:[redacted]@host...`.
fn url_without_password(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once("://")?;
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let at = rest[..authority_end].rfind('@')?;
    let userinfo = &rest[..at];
    let (user, _) = userinfo.split_once(':')?;
    Some(format!("{scheme}://{user}:{REDACTED}{}", &rest[at..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_redacted_wherever_they_are() {
        let mut v = json!({
            "admin": { "token": "t0p-s3cret-t0ken-1234", "tokens": [{ "name": "ci", "token": "x" }] },
            "redis": { "url": "redis://app:hunter2@127.0.0.1:6379/0" },
            "routes": [{ "plugins": [{ "name": "jwt-auth", "config": { "secret": "s", "issuer": "i" } }] }],
            "consumers": [{ "name": "a", "keys": [{ "id": "k1", "hash": "sha256:ab" }] }],
            "services": [{ "instances": [{ "url": "http://10.0.0.1:80" }] }]
        });
        redact(&mut v);
        assert_eq!(v["admin"]["token"], REDACTED);
        assert_eq!(v["admin"]["tokens"][0]["token"], REDACTED);
        assert_eq!(v["admin"]["tokens"][0]["name"], "ci");
        assert_eq!(v["redis"]["url"], "redis://app:[redacted]@127.0.0.1:6379/0");
        assert_eq!(v["routes"][0]["plugins"][0]["config"]["secret"], REDACTED);
        assert_eq!(v["routes"][0]["plugins"][0]["config"]["issuer"], "i");
        assert_eq!(v["consumers"][0]["keys"][0]["hash"], REDACTED);
        assert_eq!(v["consumers"][0]["keys"][0]["id"], "k1");
        assert_eq!(
            v["services"][0]["instances"][0]["url"],
            "http://10.0.0.1:80"
        );
    }
}
