//! Linting AWS IAM trust-policy JSON: a minimal walk over `Statement`, `Effect`, `Principal`, `Action` and `Condition`, kept here (not in a shared IAM module) so the linter stands alone until it is switched to the IAM evaluator's parser.

use super::model::{self, ClaimCond, Kind};
use super::{finding, Finding, LintError, Location};
use serde_json::{Map, Value};
use std::path::Path;

/// One `Statement` entry, reduced to what the rules read.
struct Statement<'a> {
    index: usize,
    sid: Option<String>,
    allow: bool,
    /// Whether this statement is about web identity (a federated principal
    /// or the `AssumeRoleWithWebIdentity` action).
    web_identity: bool,
    principal_star: bool,
    /// `(operator as written, key as written, values)`.
    conditions: Vec<(&'a str, &'a str, Vec<String>)>,
}

/// Lints the IAM policy document `text`.
pub(super) fn lint(text: &str, path: &Path) -> Result<Vec<Finding>, LintError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| LintError::Syntax {
        path: path.to_owned(),
        message: format!("not JSON: {e}"),
    })?;
    let statements = walk(&doc, path)?;
    let lines = Lines::new(text);
    let mut findings = Vec::new();
    for s in statements.iter().filter(|s| s.allow) {
        let at = |key: Option<&str>| Location::Statement {
            index: s.index,
            sid: s.sid.clone(),
            key: key.map(str::to_owned),
        };
        if s.principal_star {
            findings.push(finding(
                "TM103",
                "Principal is \"*\": any identity provider or account can assume this role if the conditions hold".to_owned(),
                None,
                at(Some("Principal")),
                lines.key(s.index, "Principal"),
            ));
        }
        if !s.web_identity {
            continue;
        }
        let mut conds = Vec::new();
        for (operator, key, values) in &s.conditions {
            let (set, base, _if_exists) = split_operator(operator);
            if set == Some("ForAllValues") {
                findings.push(finding(
                    "TM102",
                    format!("{operator} on {key} holds when the key is absent or empty, so in an Allow statement it may bind nothing"),
                    None,
                    at(Some(key)),
                    lines.key(s.index, key),
                ));
                // Vacuous when absent: it binds nothing.
                continue;
            }
            let kind = match base {
                "StringEquals" | "StringEqualsIgnoreCase" => Kind::Exact,
                "StringLike" => Kind::Like,
                // Negative and other operators bind no identity.
                _ => continue,
            };
            let claim = key.rsplit(':').next().unwrap_or(key).to_ascii_lowercase();
            conds.push(ClaimCond {
                claim,
                key: (*key).to_owned(),
                kind,
                patterns: values.clone(),
            });
        }
        if !conds.iter().any(|c| c.claim == "aud") {
            findings.push(finding(
                "TM101",
                "no aud condition: a token minted for any other relying party can be replayed to assume this role".to_owned(),
                None,
                at(None),
                lines.statement(s.index),
            ));
        }
        let provider = conds
            .iter()
            .find_map(|c| c.key.rsplit_once(':').map(|(p, _)| p))
            .unwrap_or(crate::iam::GITHUB_ACTIONS_PROVIDER)
            .to_owned();
        for (id, key, message, fix) in model::shared_rules(&conds) {
            // Rules for claims STS offers no condition key for (TM006:
            // runner_environment) cannot be acted on in a trust policy.
            if super::rule(id).is_some_and(|r| r.applies == super::Applies::Config) {
                continue;
            }
            let line = key
                .as_deref()
                .map_or_else(|| lines.statement(s.index), |k| lines.key(s.index, k));
            let fix = match (id, key.as_deref()) {
                ("TM008", Some(k)) => Some(format!("move {k} from StringLike to StringEquals")),
                _ => iam_fix(id, &provider).or(fix),
            };
            findings.push(finding(id, message, fix, at(key.as_deref()), line));
        }
    }
    findings.sort_by(|a, b| a.line.cmp(&b.line).then(a.rule_id.cmp(b.rule_id)));
    Ok(findings)
}

/// The fix for a shared rule's finding, in trust-policy terms: the general
/// fixes name tokenmint claim conditions, and some (`repository_owner_id`)
/// have no STS condition key, so following them would lock the role.
fn iam_fix(id: &str, provider: &str) -> Option<String> {
    let id_key = format!("\"{provider}:repository_id\": \"<id>\"");
    Some(match id {
        "TM001" => format!("write the owner literally (\"{provider}:sub\": \"repo:acme/app:ref:refs/heads/main\") and add {id_key} to StringEquals"),
        "TM002" => format!("add {id_key} to StringEquals, or a \"{provider}:sub\" condition naming the repository"),
        "TM003" => format!("add {id_key} to StringEquals (STS offers no repository_owner_id key), or write sub in the immutable form repo:OWNER@ID/REPO@ID:…"),
        "TM005" => format!("make sure the environment exists with required reviewers or deployment branch rules, and keep {id_key} in StringEquals"),
        "TM009" | "TM012" => format!("also pin the caller: add {id_key} to StringEquals, or a \"{provider}:sub\" condition naming the repository"),
        _ => return None,
    })
}

/// `ForAnyValue:StringLikeIfExists` → (`Some("ForAnyValue")`, `StringLike`, true).
fn split_operator(operator: &str) -> (Option<&str>, &str, bool) {
    let (set, rest) = match operator.split_once(':') {
        Some((set, rest)) => (Some(set), rest),
        None => (None, operator),
    };
    match rest.strip_suffix("IfExists") {
        Some(base) => (set, base, true),
        None => (set, rest, false),
    }
}

/// Walks the document into statements, refusing shapes IAM would refuse.
fn walk<'a>(doc: &'a Value, path: &Path) -> Result<Vec<Statement<'a>>, LintError> {
    let invalid = |entry: &str, message: &str| LintError::Invalid {
        path: path.to_owned(),
        entry: entry.to_owned(),
        message: message.to_owned(),
    };
    let Some(doc) = doc.as_object() else {
        return Err(invalid("document", "a policy document is a JSON object"));
    };
    let raw: Vec<&Value> = match doc.get("Statement") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => {
            return Err(invalid(
                "Statement",
                "missing; a trust policy needs a Statement object or array",
            ))
        }
    };
    raw.into_iter()
        .enumerate()
        .map(|(index, s)| {
            let entry = format!("Statement[{index}]");
            let s = s
                .as_object()
                .ok_or_else(|| invalid(&entry, "must be an object"))?;
            let allow = match s.get("Effect").and_then(Value::as_str) {
                Some("Allow") => true,
                Some("Deny") => false,
                _ => return Err(invalid(&entry, "Effect must be \"Allow\" or \"Deny\"")),
            };
            let principal = s.get("Principal");
            let principal_star = match principal {
                Some(Value::String(p)) => p == "*",
                Some(Value::Object(m)) => m.values().any(|v| strings(v).iter().any(|p| p == "*")),
                _ => false,
            };
            let federated =
                matches!(principal, Some(Value::Object(m)) if m.contains_key("Federated"));
            let web_action = s.get("Action").is_some_and(|a| {
                strings(a).iter().any(|a| {
                    let a = a.to_ascii_lowercase();
                    a == "sts:assumerolewithwebidentity" || a == "sts:*" || a == "*"
                })
            });
            let conditions = match s.get("Condition") {
                None => Vec::new(),
                Some(Value::Object(ops)) => conditions(ops).ok_or_else(|| {
                    invalid(
                        &entry,
                        "Condition must map operators to objects of keys and values",
                    )
                })?,
                Some(_) => return Err(invalid(&entry, "Condition must be an object")),
            };
            Ok(Statement {
                index,
                sid: s.get("Sid").and_then(Value::as_str).map(str::to_owned),
                allow,
                web_identity: federated || web_action || principal_star,
                principal_star,
                conditions,
            })
        })
        .collect()
}

fn conditions(ops: &Map<String, Value>) -> Option<Vec<(&str, &str, Vec<String>)>> {
    let mut out = Vec::new();
    for (operator, keys) in ops {
        for (key, values) in keys.as_object()? {
            out.push((operator.as_str(), key.as_str(), strings(values)));
        }
    }
    Some(out)
}

/// A string or array of scalars as strings (IAM accepts numbers and
/// booleans where strings are meant).
fn strings(v: &Value) -> Vec<String> {
    let one = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(_) | Value::Number(_) => Some(v.to_string()),
        _ => None,
    };
    match v {
        Value::Array(items) => items.iter().filter_map(one).collect(),
        other => one(other).into_iter().collect(),
    }
}

/// Best-effort line numbers in the JSON text: statement `i` starts at the
/// `i`-th `"Effect"` (every statement has one); a key is its first quoted
/// occurrence after the previous statement's `"Effect"`.
struct Lines<'a> {
    text: &'a str,
    effects: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            effects: text.match_indices("\"Effect\"").map(|(i, _)| i).collect(),
        }
    }

    fn line_of(&self, offset: usize) -> usize {
        self.text
            .get(..offset)
            .map_or(0, |head| head.matches('\n').count())
            + 1
    }

    fn statement(&self, index: usize) -> usize {
        self.effects.get(index).map_or(1, |o| self.line_of(*o))
    }

    fn key(&self, index: usize, key: &str) -> usize {
        let from = index
            .checked_sub(1)
            .and_then(|i| self.effects.get(i))
            .copied()
            .unwrap_or(0);
        let quoted = format!("\"{key}\"");
        self.text
            .get(from..)
            .and_then(|rest| rest.find(&quoted))
            .map_or_else(|| self.statement(index), |o| self.line_of(from + o))
    }
}
