//! Verified token claims: the only claim type that authorization code accepts.

use serde_json::{Map, Value};
use std::borrow::Cow;

/// The claims of an OIDC token whose structure, signature, issuer, times and
/// audience have all been checked by [`crate::oidc`]. Only that module can
/// build one, so holding a `VerifiedClaims` is proof of verification.
#[derive(Debug, Clone)]
pub struct VerifiedClaims {
    /// Name of the configured `[[issuer]]` that vouched for the token.
    issuer_name: String,
    /// The full claim set, exactly as signed (no normalisation).
    claims: Map<String, Value>,
}

impl VerifiedClaims {
    /// Wraps claims that the verifier has checked. `iss`, `sub`, `aud`, `exp`
    /// and `iat` are known to be present and well-typed.
    pub(crate) fn new(issuer_name: String, claims: Map<String, Value>) -> Self {
        Self {
            issuer_name,
            claims,
        }
    }

    /// The configured issuer's name (not its URL).
    pub fn issuer_name(&self) -> &str {
        &self.issuer_name
    }

    /// The `iss` claim.
    pub fn iss(&self) -> &str {
        self.str_claim("iss").unwrap_or_default()
    }

    /// The `sub` claim.
    pub fn sub(&self) -> &str {
        self.str_claim("sub").unwrap_or_default()
    }

    /// The `aud` claim as a list (a single string becomes one element).
    pub fn audiences(&self) -> Vec<&str> {
        match self.claims.get("aud") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// A string claim, if present and a string.
    pub fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// A claim as the text conditions compare against; see [`claim_text`].
    pub fn text(&self, name: &str) -> Option<Cow<'_, str>> {
        self.claims.get(name).and_then(claim_text)
    }

    /// The raw claim value.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.claims.get(name)
    }

    /// All claims.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.claims
    }
}

/// The text a claim value compares as: strings as they are (bytes, no
/// normalisation), booleans and numbers as their JSON text. `null`, arrays
/// and objects have no text and so never satisfy a condition.
pub fn claim_text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::String(s) => Some(Cow::Borrowed(s.as_str())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

#[cfg(test)]
pub(crate) fn claims_for_tests(issuer_name: &str, claims: Value) -> VerifiedClaims {
    match claims {
        Value::Object(map) => VerifiedClaims::new(issuer_name.to_owned(), map),
        _ => panic!("claims_for_tests needs a JSON object"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_forms() {
        assert_eq!(claim_text(&json!("a")).as_deref(), Some("a"));
        assert_eq!(claim_text(&json!(true)).as_deref(), Some("true"));
        assert_eq!(claim_text(&json!(42)).as_deref(), Some("42"));
        assert_eq!(claim_text(&json!(null)), None);
        assert_eq!(claim_text(&json!(["a"])), None);
        assert_eq!(claim_text(&json!({"a": 1})), None);
    }

    #[test]
    fn audiences_string_or_array() {
        let c = claims_for_tests("gh", json!({"aud": "x"}));
        assert_eq!(c.audiences(), vec!["x"]);
        let c = claims_for_tests("gh", json!({"aud": ["x", "y"]}));
        assert_eq!(c.audiences(), vec!["x", "y"]);
    }
}
