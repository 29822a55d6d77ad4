//! A broker's trust policy: compiled once from `[broker.claims]`, evaluated against verified claims, deny by default.
//!
//! ```toml
//! [broker.claims]                 # all keys must hold (AND); a list means any of (OR)
//! repository_owner_id = "1234"
//! sub = ["repo:acme/app:ref:refs/heads/main", "repo:acme/app:environment:prod"]
//! job_workflow_ref = { like = "acme/app/.github/workflows/*@refs/heads/main" }
//! ref = { matches = "refs/heads/(main|release/.*)" }
//! ```
//!
//! - A plain string or list of strings: the claim text equals one of them,
//!   byte for byte.
//! - `like`: IAM `StringLike` (`*` any run, `?` one character), whole value.
//! - `matches`: a regex compiled as `^(?:PATTERN)$`.
//!
//! Claims compare as [`claim_text`]: strings as they are, numbers and
//! booleans as their JSON text. A missing claim, or one that is `null`, an
//! array or an object, fails its condition.

mod condition;
mod glob;

pub use condition::{CompiledRegex, Condition};
pub use glob::Glob;

use crate::oidc::{claim_text, VerifiedClaims};
use condition::RegexDefect;
use glob::GlobDefect;
use serde_json::{Map, Value};
use std::fmt;

/// Claim values longer than this many bytes are cut (at a char boundary)
/// before they are written into a denial reason.
const MAX_LOGGED_VALUE_BYTES: usize = 256;

/// A compiled `[broker.claims]` table. Immutable, and only built by
/// [`TrustPolicy::compile`], which refuses an empty table, so a policy
/// always has at least one condition.
#[derive(Clone, Debug)]
pub struct TrustPolicy {
    /// Claim name and condition, sorted by claim name (byte order) so that
    /// evaluation order, and so the first denial reported, is deterministic.
    conditions: Vec<(String, Condition)>,
}

/// The outcome of [`TrustPolicy::evaluate`]. Deny is listed first and there
/// is no `Default`: nothing produces `Allow` except every condition passing.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A condition failed; the token must not be exchanged.
    Deny(Denial),
    /// Every condition passed.
    Allow,
}

impl Decision {
    /// Whether this is [`Decision::Allow`].
    pub fn is_allow(&self) -> bool {
        matches!(self, Self::Allow)
    }

    /// The denial, if this is [`Decision::Deny`].
    pub fn denial(&self) -> Option<&Denial> {
        match self {
            Self::Deny(denial) => Some(denial),
            Self::Allow => None,
        }
    }
}

/// Why a policy denied a token: the first failing condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    /// The claim whose condition failed (a configured claim name).
    pub claim: String,
    /// A one-line, audit-log-safe explanation. Claim values in it are
    /// quoted and escaped (no raw control characters, quotes or bidi
    /// controls) and cut to 256 bytes, marked by `…` after the quote.
    pub reason: String,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// One condition's result from [`TrustPolicy::explain`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionOutcome {
    /// The configured claim name.
    pub claim: String,
    /// The claim's text, unescaped and untruncated; `None` if the claim is
    /// missing or has no text (`null`, an array or an object). This is
    /// token content: escape it before printing (the `Display` impl does).
    pub actual: Option<String>,
    /// What would pass, e.g. `one of ["prod"]`.
    pub expected: String,
    /// Whether the condition held.
    pub passed: bool,
}

impl fmt::Display for ConditionOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed { "pass" } else { "FAIL" };
        match &self.actual {
            Some(actual) => write!(
                f,
                "{verdict} {} = {}; expected {}",
                self.claim,
                quote_value(actual),
                self.expected
            ),
            None => write!(
                f,
                "{verdict} {} has no text value; expected {}",
                self.claim, self.expected
            ),
        }
    }
}

/// Why a `[broker.claims]` table was refused. Each message names the claim
/// and says how to fix the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The table has no conditions at all.
    #[error(
        "[broker.claims] is empty, so the broker would accept any token from its issuer; \
         deny by default; add at least one condition such as repository_id = \"123456789\""
    )]
    NoConditions,

    /// A claim name is the empty string.
    #[error(
        "[broker.claims] has a condition on an empty claim name; \
         use the token's claim name, such as repository_id"
    )]
    EmptyClaimName,

    /// A claim name contains a control character.
    #[error(
        "[broker.claims] claim name {claim:?} contains a control character; \
         use the token's claim name exactly, such as repository_id"
    )]
    ControlCharInClaimName {
        /// The configured claim name.
        claim: String,
    },

    /// A number or boolean where a string belongs. Claims compare as text,
    /// so the fix is to quote it.
    #[error(
        "claim {claim}: {literal} is a TOML {kind}, but claims compare as text; \
         quote it: \"{literal}\""
    )]
    UnquotedScalar {
        /// The configured claim name.
        claim: String,
        /// `integer`, `float` or `boolean`.
        kind: &'static str,
        /// The value as written.
        literal: String,
    },

    /// A value of a type no condition takes (such as a datetime).
    #[error(
        "claim {claim}: a {found} is not a condition; write a string, an array of strings, \
         {{ like = \"pattern\" }} or {{ matches = \"regex\" }}"
    )]
    UnsupportedValue {
        /// The configured claim name.
        claim: String,
        /// The TOML type found.
        found: &'static str,
    },

    /// An inline table with a key other than `like` or `matches`.
    #[error(
        "claim {claim}: unknown operator {key:?}; use {{ like = \"pattern\" }} for \
         wildcards or {{ matches = \"regex\" }} for a regex (a plain string means exact)"
    )]
    UnknownOperator {
        /// The configured claim name.
        claim: String,
        /// The unrecognised key.
        key: String,
    },

    /// An inline table without exactly one key.
    #[error(
        "claim {claim}: an inline table must have exactly one key, like or matches, \
         but has {count}; keep one operator per claim"
    )]
    OperatorCount {
        /// The configured claim name.
        claim: String,
        /// How many keys the table has.
        count: usize,
    },

    /// An empty list, which no value could satisfy.
    #[error(
        "claim {claim}: the {operator} list is empty, so no token could match; \
         list at least one value, or remove the condition"
    )]
    EmptyList {
        /// The configured claim name.
        claim: String,
        /// `exact`, `like` or `matches`.
        operator: &'static str,
    },

    /// A list item that is not a string.
    #[error(
        "claim {claim}: item {index} of the {operator} list is a {found}, not a string; \
         write every item as a quoted string"
    )]
    NonStringItem {
        /// The configured claim name.
        claim: String,
        /// `exact`, `like` or `matches`.
        operator: &'static str,
        /// Zero-based position in the list.
        index: usize,
        /// The TOML type found.
        found: &'static str,
    },

    /// An empty exact value or pattern.
    #[error(
        "claim {claim}: an empty {operator} value binds nothing; \
         write the value or pattern the claim must have, or remove it"
    )]
    EmptyValue {
        /// The configured claim name.
        claim: String,
        /// `exact`, `like` or `matches`.
        operator: &'static str,
    },

    /// A `like` pattern containing a control character.
    #[error(
        "claim {claim}: like pattern {pattern:?} contains control character {ch:?} \
         at byte {offset}; remove it (only * and ? are special)"
    )]
    GlobControlChar {
        /// The configured claim name.
        claim: String,
        /// The pattern as written.
        pattern: String,
        /// Byte offset of the character.
        offset: usize,
        /// The control character.
        ch: char,
    },

    /// A `matches` regex containing a raw control character.
    #[error(
        "claim {claim}: matches regex {pattern:?} contains control character {ch:?} \
         at byte {offset}; remove it (to match one, write an escape such as \\n or \\x00)"
    )]
    RegexControlChar {
        /// The configured claim name.
        claim: String,
        /// The pattern as written.
        pattern: String,
        /// Byte offset of the character.
        offset: usize,
        /// The control character.
        ch: char,
    },

    /// A `matches` regex that does not compile on its own, or whose compiled
    /// form exceeds the size limit.
    #[error(
        "claim {claim}: invalid regex {pattern:?} (it is anchored for you as ^(?:…)$ and \
         must compile on its own, within 256 KiB): {error}"
    )]
    BadRegex {
        /// The configured claim name.
        claim: String,
        /// The pattern as written.
        pattern: String,
        /// What the regex compiler said.
        error: regex::Error,
    },
}

impl TrustPolicy {
    /// Compiles a `[broker.claims]` table. Errors name the claim key and say
    /// how to fix it.
    pub fn compile(table: &toml::Table) -> Result<TrustPolicy, PolicyError> {
        if table.is_empty() {
            return Err(PolicyError::NoConditions);
        }
        let mut conditions = table
            .iter()
            .map(|(claim, value)| Ok((claim.clone(), compile_condition(claim, value)?)))
            .collect::<Result<Vec<_>, PolicyError>>()?;
        conditions.sort_by(|(a, _), (b, _)| a.as_bytes().cmp(b.as_bytes()));
        Ok(TrustPolicy { conditions })
    }

    /// Evaluates against verified claims. Stops at the first failing
    /// condition, in claim-name order.
    pub fn evaluate(&self, claims: &VerifiedClaims) -> Decision {
        // 1. Unreachable through `compile`, but an empty AND must never allow.
        if self.conditions.is_empty() {
            return Decision::Deny(Denial {
                claim: String::new(),
                reason: "trust policy has no conditions; deny by default".to_owned(),
            });
        }
        // 2. Every condition, in claim-name order; the first failure denies.
        for (claim, condition) in &self.conditions {
            if let Err(denial) = check(claim, condition, claims.get(claim)) {
                return Decision::Deny(denial);
            }
        }
        // 3. Only now, with every condition passed, allow.
        Decision::Allow
    }

    /// Evaluates every condition (no short-circuit) against a raw claim map,
    /// for `policy explain` tooling. This is not an authorization decision:
    /// only [`TrustPolicy::evaluate`] on verified claims is.
    pub fn explain(&self, claims: &Map<String, Value>) -> Vec<ConditionOutcome> {
        self.conditions
            .iter()
            .map(|(claim, condition)| {
                let value = claims.get(claim);
                ConditionOutcome {
                    claim: claim.clone(),
                    actual: value.and_then(claim_text).map(|text| text.into_owned()),
                    expected: condition.expected(),
                    passed: check(claim, condition, value).is_ok(),
                }
            })
            .collect()
    }

    /// The compiled conditions, in evaluation order, for linting.
    pub fn conditions(&self) -> impl Iterator<Item = (&str, &Condition)> {
        self.conditions.iter().map(|(claim, c)| (claim.as_str(), c))
    }
}

/// Tests one condition against a claim's raw value. The only path to `Ok`
/// is a claim with text that the condition accepts.
fn check(claim: &str, condition: &Condition, value: Option<&Value>) -> Result<(), Denial> {
    let deny = |reason: String| Denial {
        claim: claim.to_owned(),
        reason,
    };
    // 1. A missing claim fails.
    let Some(value) = value else {
        return Err(deny(format!(
            "claim {claim} is missing; expected {}",
            condition.expected()
        )));
    };
    // 2. So does one with no text: null, an array or an object.
    let Some(text) = claim_text(value) else {
        return Err(deny(format!(
            "claim {claim} is not a string, number or boolean"
        )));
    };
    // 3. Otherwise the text must satisfy the condition; the value goes into
    //    the reason escaped and truncated, since the token author chose it.
    if condition.is_satisfied_by(&text) {
        Ok(())
    } else {
        Err(deny(format!(
            "claim {claim} {} {}",
            quote_value(&text),
            condition.mismatch()
        )))
    }
}

/// Renders an attacker-controlled claim value for a log line; see
/// [`crate::text::quote`].
fn quote_value(text: &str) -> String {
    crate::text::quote(text, MAX_LOGGED_VALUE_BYTES)
}

/// Compiles the condition for one `[broker.claims]` entry.
fn compile_condition(claim: &str, value: &toml::Value) -> Result<Condition, PolicyError> {
    if claim.is_empty() {
        return Err(PolicyError::EmptyClaimName);
    }
    if claim.chars().any(char::is_control) {
        return Err(PolicyError::ControlCharInClaimName {
            claim: claim.to_owned(),
        });
    }
    match value {
        toml::Value::Table(operator) => compile_operator(claim, operator),
        _ => {
            let values = string_list(claim, "exact", value)?;
            Ok(Condition::Exact(
                values.into_iter().map(str::to_owned).collect(),
            ))
        }
    }
}

/// Compiles `{ like = … }` or `{ matches = … }`.
fn compile_operator(claim: &str, operator: &toml::Table) -> Result<Condition, PolicyError> {
    let mut entries = operator.iter();
    let (Some((key, value)), None) = (entries.next(), entries.next()) else {
        return Err(PolicyError::OperatorCount {
            claim: claim.to_owned(),
            count: operator.len(),
        });
    };
    match key.as_str() {
        "like" => {
            let globs = string_list(claim, "like", value)?
                .into_iter()
                .map(|pattern| {
                    Glob::new(pattern).map_err(|defect| match defect {
                        GlobDefect::Empty => PolicyError::EmptyValue {
                            claim: claim.to_owned(),
                            operator: "like",
                        },
                        GlobDefect::ControlChar { offset, ch } => PolicyError::GlobControlChar {
                            claim: claim.to_owned(),
                            pattern: pattern.to_owned(),
                            offset,
                            ch,
                        },
                    })
                })
                .collect::<Result<_, _>>()?;
            Ok(Condition::Like(globs))
        }
        "matches" => {
            let regexes = string_list(claim, "matches", value)?
                .into_iter()
                .map(|pattern| {
                    CompiledRegex::new(pattern).map_err(|defect| match defect {
                        RegexDefect::ControlChar { offset, ch } => PolicyError::RegexControlChar {
                            claim: claim.to_owned(),
                            pattern: pattern.to_owned(),
                            offset,
                            ch,
                        },
                        RegexDefect::Compile(error) => PolicyError::BadRegex {
                            claim: claim.to_owned(),
                            pattern: pattern.to_owned(),
                            error,
                        },
                    })
                })
                .collect::<Result<_, _>>()?;
            Ok(Condition::Matches(regexes))
        }
        _ => Err(PolicyError::UnknownOperator {
            claim: claim.to_owned(),
            key: key.clone(),
        }),
    }
}

/// Reads a string or a non-empty array of strings, refusing empty strings.
fn string_list<'a>(
    claim: &str,
    operator: &'static str,
    value: &'a toml::Value,
) -> Result<Vec<&'a str>, PolicyError> {
    let values = match value {
        toml::Value::String(s) => vec![s.as_str()],
        toml::Value::Array(items) => {
            if items.is_empty() {
                return Err(PolicyError::EmptyList {
                    claim: claim.to_owned(),
                    operator,
                });
            }
            items
                .iter()
                .enumerate()
                .map(|(index, item)| {
                    item.as_str().ok_or_else(|| PolicyError::NonStringItem {
                        claim: claim.to_owned(),
                        operator,
                        index,
                        found: item.type_str(),
                    })
                })
                .collect::<Result<_, _>>()?
        }
        toml::Value::Integer(i) => return Err(unquoted(claim, "integer", i.to_string())),
        toml::Value::Float(x) => return Err(unquoted(claim, "float", x.to_string())),
        toml::Value::Boolean(b) => return Err(unquoted(claim, "boolean", b.to_string())),
        toml::Value::Table(_) | toml::Value::Datetime(_) => {
            return Err(PolicyError::UnsupportedValue {
                claim: claim.to_owned(),
                found: value.type_str(),
            })
        }
    };
    if values.iter().any(|v| v.is_empty()) {
        return Err(PolicyError::EmptyValue {
            claim: claim.to_owned(),
            operator,
        });
    }
    Ok(values)
}

fn unquoted(claim: &str, kind: &'static str, literal: String) -> PolicyError {
    PolicyError::UnquotedScalar {
        claim: claim.to_owned(),
        kind,
        literal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::claims_for_tests;
    use serde_json::json;

    fn policy(toml_text: &str) -> TrustPolicy {
        TrustPolicy::compile(&table(toml_text)).unwrap()
    }

    fn table(toml_text: &str) -> toml::Table {
        toml_text.parse::<toml::Table>().unwrap()
    }

    fn compile_err(toml_text: &str) -> PolicyError {
        TrustPolicy::compile(&table(toml_text)).unwrap_err()
    }

    fn decide(p: &TrustPolicy, claims: Value) -> Decision {
        p.evaluate(&claims_for_tests("github", claims))
    }

    fn reason(p: &TrustPolicy, claims: Value) -> String {
        match decide(p, claims) {
            Decision::Deny(denial) => denial.reason,
            Decision::Allow => panic!("expected a denial"),
        }
    }

    const EXAMPLE: &str = r#"
        repository_owner_id = "1234"
        sub = ["repo:acme/app:ref:refs/heads/main", "repo:acme/app:environment:prod"]
        job_workflow_ref = { like = "acme/app/.github/workflows/*@refs/heads/main" }
        ref = { matches = "refs/heads/(main|release/.*)" }
    "#;

    fn example_claims() -> Value {
        json!({
            "repository_owner_id": "1234",
            "sub": "repo:acme/app:ref:refs/heads/main",
            "job_workflow_ref": "acme/app/.github/workflows/deploy.yml@refs/heads/main",
            "ref": "refs/heads/main",
        })
    }

    fn with(claim: &str, value: Value) -> Value {
        let mut claims = example_claims();
        claims[claim] = value;
        claims
    }

    // Evaluation

    #[test]
    fn example_policy_allows_matching_claims() {
        assert!(decide(&policy(EXAMPLE), example_claims()).is_allow());
    }

    #[test]
    fn exact_is_case_sensitive() {
        let p = policy(EXAMPLE);
        let d = decide(&p, with("sub", json!("repo:ACME/app:ref:refs/heads/main")));
        assert!(!d.is_allow());
        assert_eq!(d.denial().map(|d| d.claim.as_str()), Some("sub"));
    }

    #[test]
    fn exact_list_is_any_of() {
        let p = policy(EXAMPLE);
        assert!(decide(&p, with("sub", json!("repo:acme/app:environment:prod"))).is_allow());
        assert!(!decide(&p, with("sub", json!("repo:acme/app:environment:dev"))).is_allow());
    }

    #[test]
    fn every_key_must_hold() {
        let p = policy(EXAMPLE);
        for claim in ["repository_owner_id", "sub", "job_workflow_ref", "ref"] {
            let d = decide(&p, with(claim, json!("nope")));
            assert_eq!(d.denial().map(|d| d.claim.as_str()), Some(claim), "{claim}");
        }
    }

    #[test]
    fn missing_claim_fails() {
        let p = policy(EXAMPLE);
        for claim in ["repository_owner_id", "sub", "job_workflow_ref", "ref"] {
            let mut claims = example_claims();
            claims.as_object_mut().unwrap().remove(claim);
            let d = decide(&p, claims);
            assert_eq!(d.denial().map(|d| d.claim.as_str()), Some(claim), "{claim}");
        }
    }

    #[test]
    fn numbers_and_booleans_compare_as_json_text() {
        let p = policy(
            r#"repository_id = "42"
            ok = "true"
            like_num = { like = "4?" }
            re_bool = { matches = "t.*" }"#,
        );
        let claims = json!({"repository_id": 42, "ok": true, "like_num": 41, "re_bool": true});
        assert!(decide(&p, claims).is_allow());
        assert!(!decide(
            &p,
            json!({"repository_id": 43, "ok": true, "like_num": 41, "re_bool": true})
        )
        .is_allow());
        assert!(!decide(
            &p,
            json!({"repository_id": 42, "ok": false, "like_num": 41, "re_bool": true})
        )
        .is_allow());
        // 42.0 is not the text "42".
        assert!(!decide(
            &p,
            json!({"repository_id": 42.0, "ok": true, "like_num": 41, "re_bool": true})
        )
        .is_allow());
    }

    #[test]
    fn null_arrays_and_objects_fail_even_permissive_patterns() {
        let p = policy(r#"x = { like = "*" }"#);
        assert!(decide(&p, json!({"x": ""})).is_allow());
        for v in [
            json!(null),
            json!([]),
            json!(["a"]),
            json!({}),
            json!({"a": "b"}),
        ] {
            assert_eq!(
                reason(&p, json!({ "x": v })),
                "claim x is not a string, number or boolean"
            );
        }
        let p = policy(r#"x = { matches = ".*" }"#);
        assert!(!decide(&p, json!({"x": null})).is_allow());
    }

    #[test]
    fn like_condition_end_to_end() {
        let p = policy(r#"r = { like = ["refs/heads/*", "refs/tags/v?"] }"#);
        assert!(decide(&p, json!({"r": "refs/heads/"})).is_allow());
        assert!(decide(&p, json!({"r": "refs/tags/v1"})).is_allow());
        assert!(!decide(&p, json!({"r": "refs/tags/v10"})).is_allow());
        assert!(!decide(&p, json!({"r": "xrefs/heads/main"})).is_allow());
    }

    #[test]
    fn matches_alternation_is_anchored() {
        let p = policy(r#"x = { matches = "a|b" }"#);
        assert!(decide(&p, json!({"x": "a"})).is_allow());
        assert!(decide(&p, json!({"x": "b"})).is_allow());
        assert!(!decide(&p, json!({"x": "ab"})).is_allow());
        assert!(!decide(&p, json!({"x": "xa"})).is_allow());
        assert!(!decide(&p, json!({"x": "bx"})).is_allow());
    }

    #[test]
    fn matches_list_is_any_of() {
        let p = policy(r#"x = { matches = ["a+", "b+"] }"#);
        assert!(decide(&p, json!({"x": "aaa"})).is_allow());
        assert!(decide(&p, json!({"x": "bb"})).is_allow());
        assert!(!decide(&p, json!({"x": "ab"})).is_allow());
    }

    #[test]
    fn evaluation_stops_at_first_failure_in_name_order() {
        let p = policy(
            r#"zeta = "z"
            alpha = "a"
            mid = "m""#,
        );
        let names: Vec<&str> = p.conditions().map(|(name, _)| name).collect();
        assert_eq!(names, vec!["alpha", "mid", "zeta"]);
        let d = decide(&p, json!({"alpha": "x", "mid": "x", "zeta": "x"}));
        assert_eq!(d.denial().map(|d| d.claim.as_str()), Some("alpha"));
        let d = decide(&p, json!({"alpha": "a", "zeta": "x"}));
        assert_eq!(d.denial().map(|d| d.claim.as_str()), Some("mid"));
    }

    #[test]
    fn a_policy_without_conditions_denies() {
        let p = TrustPolicy {
            conditions: Vec::new(),
        };
        assert!(!decide(&p, json!({"sub": "x"})).is_allow());
    }

    #[test]
    fn conditions_expose_operators_and_patterns() {
        let p = policy(EXAMPLE);
        let listed: Vec<(&str, &str, Vec<&str>)> = p
            .conditions()
            .map(|(name, c)| (name, c.operator(), c.patterns()))
            .collect();
        assert_eq!(
            listed,
            vec![
                (
                    "job_workflow_ref",
                    "like",
                    vec!["acme/app/.github/workflows/*@refs/heads/main"]
                ),
                ("ref", "matches", vec!["refs/heads/(main|release/.*)"]),
                ("repository_owner_id", "exact", vec!["1234"]),
                (
                    "sub",
                    "exact",
                    vec![
                        "repo:acme/app:ref:refs/heads/main",
                        "repo:acme/app:environment:prod"
                    ]
                ),
            ]
        );
    }

    // Denial reasons

    #[test]
    fn denial_reason_formats() {
        let p = policy(EXAMPLE);
        assert_eq!(
            reason(&p, with("sub", json!("repo:evil/x:ref:refs/heads/main"))),
            r#"claim sub "repo:evil/x:ref:refs/heads/main" matched none of ["repo:acme/app:ref:refs/heads/main", "repo:acme/app:environment:prod"]"#
        );
        assert_eq!(
            reason(&p, with("job_workflow_ref", json!("x"))),
            r#"claim job_workflow_ref "x" matched no pattern like ["acme/app/.github/workflows/*@refs/heads/main"]"#
        );
        assert_eq!(
            reason(&p, with("ref", json!("refs/heads/dev"))),
            r#"claim ref "refs/heads/dev" matched no regex in ["refs/heads/(main|release/.*)"]"#
        );
        assert_eq!(
            reason(&p, with("repository_owner_id", json!(99))),
            r#"claim repository_owner_id "99" matched none of ["1234"]"#
        );

        let p = policy(r#"environment = ["prod"]"#);
        assert_eq!(
            reason(&p, json!({})),
            r#"claim environment is missing; expected one of ["prod"]"#
        );
        let p = policy(r#"w = { like = "a*" }"#);
        assert_eq!(
            reason(&p, json!({})),
            r#"claim w is missing; expected a value like ["a*"]"#
        );
        let p = policy(r#"run_id = { matches = "[0-9]+" }"#);
        assert_eq!(
            reason(&p, json!({"run_id": [1]})),
            "claim run_id is not a string, number or boolean"
        );
    }

    #[test]
    fn denial_display_is_the_reason() {
        let p = policy(r#"environment = "prod""#);
        let Decision::Deny(denial) = decide(&p, json!({})) else {
            panic!("expected a denial");
        };
        assert_eq!(denial.to_string(), denial.reason);
        assert_eq!(denial.claim, "environment");
    }

    #[test]
    fn hostile_claim_values_are_escaped() {
        let p = policy(r#"sub = "repo:acme/app:ref:refs/heads/main""#);
        let hostile = "x\" matched none of []\nALLOW sub=\"repo:acme/app\u{202e}\u{1b}[2J\\";
        let r = reason(&p, json!({ "sub": hostile }));
        assert_eq!(
            r,
            r#"claim sub "x\" matched none of []\nALLOW sub=\"repo:acme/app\u{202e}\u{1b}[2J\\" matched none of ["repo:acme/app:ref:refs/heads/main"]"#
        );
        assert!(!r.chars().any(char::is_control));
        assert!(!r.contains('\u{202e}'));
    }

    #[test]
    fn long_claim_values_are_truncated_at_a_char_boundary() {
        let p = policy(r#"sub = "s""#);

        let exact = "a".repeat(MAX_LOGGED_VALUE_BYTES);
        let r = reason(&p, json!({ "sub": exact }));
        assert!(r.contains(&format!("\"{exact}\" matched")), "{r}");
        assert!(!r.contains('…'));

        let long = "a".repeat(MAX_LOGGED_VALUE_BYTES + 1);
        let r = reason(&p, json!({ "sub": long }));
        assert_eq!(r, format!(r#"claim sub "{exact}"… matched none of ["s"]"#));

        // 255 ASCII bytes then a 2-byte char straddling the limit.
        let straddle = format!("{}é tail", "b".repeat(MAX_LOGGED_VALUE_BYTES - 1));
        let r = reason(&p, json!({ "sub": straddle }));
        let kept = "b".repeat(MAX_LOGGED_VALUE_BYTES - 1);
        assert_eq!(r, format!(r#"claim sub "{kept}"… matched none of ["s"]"#));

        // The limit is on raw bytes; escaping happens after the cut.
        let newlines = "\n".repeat(1000);
        let r = reason(&p, json!({ "sub": newlines }));
        assert_eq!(r.matches("\\n").count(), MAX_LOGGED_VALUE_BYTES);
    }

    // Explain

    #[test]
    fn explain_reports_every_condition() {
        let p = policy(EXAMPLE);
        let claims = json!({
            "repository_owner_id": 1234,
            "sub": "repo:evil/x:ref:refs/heads/main",
            "ref": ["refs/heads/main"],
        });
        let Value::Object(map) = claims else {
            unreachable!()
        };
        let outcomes = p.explain(&map);
        assert_eq!(
            outcomes,
            vec![
                ConditionOutcome {
                    claim: "job_workflow_ref".into(),
                    actual: None,
                    expected: r#"a value like ["acme/app/.github/workflows/*@refs/heads/main"]"#.into(),
                    passed: false,
                },
                ConditionOutcome {
                    claim: "ref".into(),
                    actual: None,
                    expected: r#"a value matching a regex in ["refs/heads/(main|release/.*)"]"#
                        .into(),
                    passed: false,
                },
                ConditionOutcome {
                    claim: "repository_owner_id".into(),
                    actual: Some("1234".into()),
                    expected: r#"one of ["1234"]"#.into(),
                    passed: true,
                },
                ConditionOutcome {
                    claim: "sub".into(),
                    actual: Some("repo:evil/x:ref:refs/heads/main".into()),
                    expected: r#"one of ["repo:acme/app:ref:refs/heads/main", "repo:acme/app:environment:prod"]"#.into(),
                    passed: false,
                },
            ]
        );
        assert_eq!(
            outcomes[3].to_string(),
            r#"FAIL sub = "repo:evil/x:ref:refs/heads/main"; expected one of ["repo:acme/app:ref:refs/heads/main", "repo:acme/app:environment:prod"]"#
        );
        assert_eq!(
            outcomes[0].to_string(),
            r#"FAIL job_workflow_ref has no text value; expected a value like ["acme/app/.github/workflows/*@refs/heads/main"]"#
        );
    }

    #[test]
    fn explain_display_escapes_values() {
        let p = policy(r#"sub = "s""#);
        let Value::Object(map) = json!({"sub": "a\nb"}) else {
            unreachable!()
        };
        let line = p.explain(&map)[0].to_string();
        assert_eq!(line, r#"FAIL sub = "a\nb"; expected one of ["s"]"#);
    }

    // Compile errors

    #[test]
    fn empty_table_is_refused() {
        let e = compile_err("");
        assert!(matches!(e, PolicyError::NoConditions));
        let msg = e.to_string();
        assert!(msg.contains("deny by default"), "{msg}");
        assert!(msg.contains("repository_id"), "{msg}");
    }

    #[test]
    fn empty_claim_name_is_refused() {
        let e = compile_err(r#""" = "x""#);
        assert!(matches!(e, PolicyError::EmptyClaimName), "{e}");
    }

    #[test]
    fn control_char_in_claim_name_is_refused() {
        let e = compile_err(r#""su\nb" = "x""#);
        assert!(
            matches!(e, PolicyError::ControlCharInClaimName { .. }),
            "{e}"
        );
        assert!(e.to_string().contains(r#""su\nb""#), "{e}");
    }

    #[test]
    fn unquoted_scalars_are_refused_with_a_quoting_hint() {
        let e = compile_err("repository_id = 1234");
        assert!(
            matches!(
                e,
                PolicyError::UnquotedScalar {
                    kind: "integer",
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            r#"claim repository_id: 1234 is a TOML integer, but claims compare as text; quote it: "1234""#
        );
        let e = compile_err("x = true");
        assert!(
            matches!(
                e,
                PolicyError::UnquotedScalar {
                    kind: "boolean",
                    ..
                }
            ),
            "{e}"
        );
        let e = compile_err("x = 1.5");
        assert!(
            matches!(e, PolicyError::UnquotedScalar { kind: "float", .. }),
            "{e}"
        );
        let e = compile_err("x = { like = 5 }");
        assert!(matches!(e, PolicyError::UnquotedScalar { .. }), "{e}");
    }

    #[test]
    fn unsupported_value_types_are_refused() {
        let e = compile_err("x = 1979-05-27T07:32:00Z");
        assert!(
            matches!(
                e,
                PolicyError::UnsupportedValue {
                    found: "datetime",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().starts_with("claim x: "), "{e}");
        let e = compile_err("x = { like = { like = \"a\" } }");
        assert!(
            matches!(e, PolicyError::UnsupportedValue { found: "table", .. }),
            "{e}"
        );
    }

    #[test]
    fn unknown_operator_is_refused() {
        let e = compile_err(r#"ref = { regex = "refs/.*" }"#);
        assert!(
            matches!(&e, PolicyError::UnknownOperator { key, .. } if key == "regex"),
            "{e}"
        );
        let msg = e.to_string();
        assert!(msg.starts_with("claim ref: "), "{msg}");
        assert!(msg.contains("like") && msg.contains("matches"), "{msg}");
        // Near-misses get no special treatment.
        let e = compile_err(r#"ref = { Like = "refs/*" }"#);
        assert!(matches!(e, PolicyError::UnknownOperator { .. }), "{e}");
    }

    #[test]
    fn inline_table_needs_exactly_one_operator() {
        let e = compile_err(r#"ref = { like = "a*", matches = "a.*" }"#);
        assert!(
            matches!(e, PolicyError::OperatorCount { count: 2, .. }),
            "{e}"
        );
        assert!(e.to_string().starts_with("claim ref: "), "{e}");
        let e = compile_err("ref = {}");
        assert!(
            matches!(e, PolicyError::OperatorCount { count: 0, .. }),
            "{e}"
        );
    }

    #[test]
    fn empty_lists_are_refused() {
        for (text, op) in [
            ("sub = []", "exact"),
            ("sub = { like = [] }", "like"),
            ("sub = { matches = [] }", "matches"),
        ] {
            let e = compile_err(text);
            assert!(
                matches!(e, PolicyError::EmptyList { operator, .. } if operator == op),
                "{text}: {e}"
            );
            assert!(e.to_string().starts_with("claim sub: "), "{e}");
        }
    }

    #[test]
    fn non_string_items_are_refused() {
        for (text, op) in [
            (r#"sub = ["a", 1]"#, "exact"),
            (r#"sub = { like = ["a", true] }"#, "like"),
            (r#"sub = { matches = ["a", ["b"]] }"#, "matches"),
            (r#"sub = ["a", { like = "b*" }]"#, "exact"),
        ] {
            let e = compile_err(text);
            assert!(
                matches!(e, PolicyError::NonStringItem { operator, index: 1, .. } if operator == op),
                "{text}: {e}"
            );
            assert!(e.to_string().starts_with("claim sub: item 1 "), "{e}");
        }
    }

    #[test]
    fn empty_strings_are_refused() {
        for (text, op) in [
            (r#"sub = """#, "exact"),
            (r#"sub = ["a", ""]"#, "exact"),
            (r#"sub = { like = "" }"#, "like"),
            (r#"sub = { like = ["a*", ""] }"#, "like"),
            (r#"sub = { matches = "" }"#, "matches"),
        ] {
            let e = compile_err(text);
            assert!(
                matches!(e, PolicyError::EmptyValue { operator, .. } if operator == op),
                "{text}: {e}"
            );
            assert!(e.to_string().starts_with("claim sub: "), "{e}");
        }
    }

    #[test]
    fn glob_with_control_char_is_refused() {
        let e = compile_err(r#"ref = { like = "refs/heads/\u0000*" }"#);
        assert!(
            matches!(
                e,
                PolicyError::GlobControlChar {
                    offset: 11,
                    ch: '\0',
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            r#"claim ref: like pattern "refs/heads/\0*" contains control character '\0' at byte 11; remove it (only * and ? are special)"#
        );
    }

    #[test]
    fn regex_with_control_char_is_refused() {
        let e = compile_err(r#"ref = { matches = "refs/heads/\u0000.*" }"#);
        assert!(
            matches!(
                e,
                PolicyError::RegexControlChar {
                    offset: 11,
                    ch: '\0',
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            r#"claim ref: matches regex "refs/heads/\0.*" contains control character '\0' at byte 11; remove it (to match one, write an escape such as \n or \x00)"#
        );
        // A TOML "\n" is a raw newline: refused. A literal backslash-n is a regex escape: fine.
        let e = compile_err(r#"ref = { matches = ["main", "main\n"] }"#);
        assert!(
            matches!(e, PolicyError::RegexControlChar { ch: '\n', .. }),
            "{e}"
        );
        let p = TrustPolicy::compile(&table(r#"ref = { matches = 'main\n?' }"#));
        assert!(p.is_ok(), "{p:?}");
    }

    #[test]
    fn bad_regex_is_refused_with_the_regex_error() {
        let e = compile_err(r#"ref = { matches = "refs/(main" }"#);
        let PolicyError::BadRegex {
            claim,
            pattern,
            error,
        } = &e
        else {
            panic!("{e}");
        };
        assert_eq!(claim, "ref");
        assert_eq!(pattern, "refs/(main");
        let msg = e.to_string();
        assert!(
            msg.starts_with(r#"claim ref: invalid regex "refs/(main""#),
            "{msg}"
        );
        assert!(msg.contains(&error.to_string()), "{msg}");
    }

    #[test]
    fn regex_that_escapes_its_group_is_refused() {
        let e = compile_err(r#"ref = { matches = "a)|(?:b" }"#);
        assert!(matches!(e, PolicyError::BadRegex { .. }), "{e}");
    }

    #[test]
    fn oversized_regex_is_refused() {
        let e = compile_err(r"x = { matches = '\w{1000}\w{1000}\w{1000}' }");
        assert!(
            matches!(
                e,
                PolicyError::BadRegex {
                    error: regex::Error::CompiledTooBig(_),
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn first_bad_entry_fails_the_whole_policy() {
        let e = compile_err(
            r#"repository_id = "1"
            sub = []"#,
        );
        assert!(matches!(e, PolicyError::EmptyList { .. }), "{e}");
    }
}
