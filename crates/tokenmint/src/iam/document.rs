//! Parsing: an IAM trust-policy JSON document into an immutable [`IamPolicy`], refusing what STS would refuse or what we could not evaluate faithfully.

use super::IamError;
use crate::oidc::jose::parse_strict_json;
use crate::policy::Glob;
use serde_json::{Map, Value};

/// The brief's name for the parser entry point: `TrustPolicy::parse(json)`
/// returns an [`IamPolicy`]. (Not to be confused with
/// [`crate::policy::TrustPolicy`], the `[broker.claims]` engine.)
pub type TrustPolicy = IamPolicy;

/// A parsed IAM role trust policy. Immutable; only built by
/// [`IamPolicy::parse`], which refuses an empty `Statement`, so a policy
/// always has at least one statement.
#[derive(Clone, Debug)]
pub struct IamPolicy {
    /// `Version` as written; `None` when absent (AWS then applies the
    /// 2008-10-17 rules, under which `${…}` is literal text).
    version: Option<PolicyVersion>,
    /// The optional top-level `Id`, kept for explain output.
    id: Option<String>,
    /// The statements in document order; their index names them in reasons.
    statements: Vec<Statement>,
}

/// The policy language version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyVersion {
    /// `"2012-10-17"`: the current language, with policy variables.
    V2012,
    /// `"2008-10-17"`: the legacy language; `${…}` is literal text.
    V2008,
}

/// One statement of a trust policy.
#[derive(Clone, Debug)]
pub struct Statement {
    /// `Sid`, if any, for reasons and linting.
    sid: Option<String>,
    /// Allow or Deny.
    effect: Effect,
    /// Whom the statement is about.
    principal: Principal,
    /// `Action` or `NotAction`.
    action: ActionMatch,
    /// Every condition (operator × key), ANDed, in document order
    /// (operators and keys sorted by their JSON text).
    conditions: Vec<Condition>,
}

/// A statement's `Effect`. Deny is listed first; there is no `Default`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// `"Deny"`: an applicable statement denies, whatever else allows.
    Deny,
    /// `"Allow"`.
    Allow,
}

/// A statement's `Principal`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// `"*"`: everyone. Recorded so that `policy lint` can flag it.
    Everyone,
    /// `{"Federated": …, "AWS": …, …}`: the listed principals (non-empty).
    Listed(Vec<PrincipalId>),
}

/// One principal named in a `Principal` object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrincipalId {
    /// The principal type (the object key).
    pub kind: PrincipalKind,
    /// The value as written, e.g. an OIDC provider ARN.
    pub value: String,
}

/// The principal types of the IAM grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrincipalKind {
    /// `Federated`: an identity provider (the only kind web identity matches,
    /// besides the `"*"` forms).
    Federated,
    /// `AWS`: an account, user or role ARN; `{"AWS": "*"}` means everyone.
    Aws,
    /// `Service`: an AWS service principal; never matches web identity.
    Service,
    /// `CanonicalUser`: never matches web identity.
    CanonicalUser,
}

/// A statement's `Action` (or `NotAction`) list.
#[derive(Clone, Debug)]
pub struct ActionMatch {
    /// `true` for `NotAction`: the statement applies to every action except
    /// the listed ones.
    negated: bool,
    /// The patterns (non-empty).
    patterns: Vec<ActionPattern>,
}

/// One action pattern, matched case-insensitively with `*` and `?`.
#[derive(Clone, Debug)]
struct ActionPattern {
    /// As written, for reasons and linting.
    source: String,
    /// The lowercased pattern; actions are lowercased before matching.
    glob: Glob,
}

/// How a condition operator is qualified and what it compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConditionOperator {
    /// `ForAnyValue:` or `ForAllValues:`, if present.
    pub set: Option<SetQualifier>,
    /// The comparison.
    pub kind: OperatorKind,
    /// The `IfExists` suffix: true when the key is missing.
    pub if_exists: bool,
}

/// A set-operator prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetQualifier {
    /// `ForAnyValue:`: some request value satisfies; false on an empty set.
    ForAnyValue,
    /// `ForAllValues:`: every request value satisfies; **true on an empty
    /// or absent set**.
    ForAllValues,
}

/// The base comparison of a condition operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperatorKind {
    /// Exact, case-sensitive.
    StringEquals,
    /// Negation of `StringEquals`.
    StringNotEquals,
    /// Exact, ignoring case.
    StringEqualsIgnoreCase,
    /// Negation of `StringEqualsIgnoreCase`.
    StringNotEqualsIgnoreCase,
    /// Whole-string, case-sensitive, `*` any run and `?` one character.
    StringLike,
    /// Negation of `StringLike`.
    StringNotLike,
    /// `true`/`false`, case-insensitive.
    Bool,
    /// `true`: the key is missing; `false`: it is present.
    Null,
}

impl OperatorKind {
    /// Whether this is one of the negated string operators, which hold on a
    /// missing key.
    pub fn is_negated(self) -> bool {
        matches!(
            self,
            Self::StringNotEquals | Self::StringNotEqualsIgnoreCase | Self::StringNotLike
        )
    }

    /// The operator's base name, as IAM spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::StringEquals => "StringEquals",
            Self::StringNotEquals => "StringNotEquals",
            Self::StringEqualsIgnoreCase => "StringEqualsIgnoreCase",
            Self::StringNotEqualsIgnoreCase => "StringNotEqualsIgnoreCase",
            Self::StringLike => "StringLike",
            Self::StringNotLike => "StringNotLike",
            Self::Bool => "Bool",
            Self::Null => "Null",
        }
    }

    /// Parses a base name (no prefix, no `IfExists`). Case-sensitive.
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "StringEquals" => Self::StringEquals,
            "StringNotEquals" => Self::StringNotEquals,
            "StringEqualsIgnoreCase" => Self::StringEqualsIgnoreCase,
            "StringNotEqualsIgnoreCase" => Self::StringNotEqualsIgnoreCase,
            "StringLike" => Self::StringLike,
            "StringNotLike" => Self::StringNotLike,
            "Bool" => Self::Bool,
            "Null" => Self::Null,
            _ => return None,
        })
    }
}

/// One condition: an operator applied to one key with one or more policy
/// values (ORed).
#[derive(Clone, Debug)]
pub struct Condition {
    /// The parsed operator.
    operator: ConditionOperator,
    /// The operator exactly as written, for reasons.
    operator_text: String,
    /// The key exactly as written, for reasons.
    key: String,
    /// The key lowercased: keys compare case-insensitively.
    pub(super) key_folded: String,
    /// The policy values as text (numbers and booleans as their JSON text),
    /// in document order; non-empty.
    values: Vec<String>,
    /// The values in the form the operator compares.
    pub(super) compiled: Compiled,
}

/// Policy values prepared for their operator.
#[derive(Clone, Debug)]
pub(super) enum Compiled {
    /// `StringEquals`/`StringNotEquals`: the values as they are.
    Exact,
    /// The `IgnoreCase` operators: the values lowercased.
    Folded(Vec<String>),
    /// `StringLike`/`StringNotLike`: `None` is the empty pattern, which
    /// matches only the empty string ([`Glob`] has no empty form).
    Like(Vec<Option<Glob>>),
    /// `Bool` and `Null`: the values as booleans.
    Bools(Vec<bool>),
}

impl IamPolicy {
    /// Parses an IAM trust-policy JSON document. Duplicate keys at any depth
    /// are refused, as are unknown keys and operators; see the module docs
    /// for the full list.
    pub fn parse(json: &str) -> Result<IamPolicy, IamError> {
        // 1. Strict JSON: no duplicate keys, no trailing data.
        let document = parse_strict_json(json.as_bytes()).map_err(IamError::Json)?;
        let top = as_object(&document, "the policy document")?;
        // 2. Only the top-level keys of the grammar.
        for key in top.keys() {
            if !matches!(key.as_str(), "Version" | "Id" | "Statement") {
                return Err(IamError::UnknownKey {
                    location: "the policy document".to_owned(),
                    key: key.clone(),
                    allowed: "Version, Id and Statement",
                });
            }
        }
        // 3. Version decides whether `${` is a policy variable.
        let version = match top.get("Version") {
            None => None,
            Some(Value::String(v)) if v == "2012-10-17" => Some(PolicyVersion::V2012),
            Some(Value::String(v)) if v == "2008-10-17" => Some(PolicyVersion::V2008),
            Some(Value::String(v)) => return Err(IamError::BadVersion { found: v.clone() }),
            Some(other) => return Err(wrong_type("Version", "a string", other)),
        };
        let id = match top.get("Id") {
            None => None,
            Some(Value::String(id)) => Some(id.clone()),
            Some(other) => return Err(wrong_type("Id", "a string", other)),
        };
        // 4. Statement: one object or a non-empty array of them.
        let raw_statements = match top.get("Statement") {
            None => {
                return Err(IamError::MissingKey {
                    location: "the policy document".to_owned(),
                    key: "Statement",
                    hint: "add a Statement with at least one Allow statement",
                })
            }
            Some(Value::Array(items)) if items.is_empty() => {
                return Err(IamError::Empty {
                    location: "Statement".to_owned(),
                    hint: "add at least one statement",
                })
            }
            Some(Value::Array(items)) => items.iter().collect::<Vec<_>>(),
            Some(single @ Value::Object(_)) => vec![single],
            Some(other) => {
                return Err(wrong_type(
                    "Statement",
                    "an object or an array of objects",
                    other,
                ))
            }
        };
        let statements = raw_statements
            .into_iter()
            .enumerate()
            .map(|(index, raw)| parse_statement(index, raw, version))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(IamPolicy {
            version,
            id,
            statements,
        })
    }

    /// `Version` as written; `None` when the document has none.
    pub fn version(&self) -> Option<PolicyVersion> {
        self.version
    }

    /// The top-level `Id`, if any.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The statements, in document order (never empty).
    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }
}

impl Statement {
    /// `Sid`, if any.
    pub fn sid(&self) -> Option<&str> {
        self.sid.as_deref()
    }

    /// Allow or Deny.
    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// The principal.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// `Action` or `NotAction`.
    pub fn action(&self) -> &ActionMatch {
        &self.action
    }

    /// The conditions, ANDed, in evaluation order.
    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }
}

impl ActionMatch {
    /// Whether this is `NotAction`.
    pub fn is_not_action(&self) -> bool {
        self.negated
    }

    /// The patterns as written.
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.patterns.iter().map(|p| p.source.as_str())
    }

    /// Whether the statement applies to `action`: some pattern matches
    /// (case-insensitively), or for `NotAction` none does.
    pub fn applies_to(&self, action: &str) -> bool {
        let action = action.to_lowercase();
        let listed = self.patterns.iter().any(|p| p.glob.is_match(&action));
        listed != self.negated
    }
}

impl Condition {
    /// The parsed operator.
    pub fn operator(&self) -> ConditionOperator {
        self.operator
    }

    /// The operator exactly as written, e.g. `ForAnyValue:StringLike`.
    pub fn operator_text(&self) -> &str {
        &self.operator_text
    }

    /// The condition key as written.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The policy values as text, in document order.
    pub fn values(&self) -> &[String] {
        &self.values
    }
}

/// `Statement[i]` or `Statement[i] (Sid "x")`, for messages.
fn statement_location(index: usize, sid: Option<&str>) -> String {
    match sid {
        Some(sid) => format!("Statement[{index}] (Sid {sid:?})"),
        None => format!("Statement[{index}]"),
    }
}

fn parse_statement(
    index: usize,
    raw: &Value,
    version: Option<PolicyVersion>,
) -> Result<Statement, IamError> {
    let bare = format!("Statement[{index}]");
    let object = as_object(raw, &bare)?;
    // 1. Sid first, so every later message can name the statement.
    let sid = match object.get("Sid") {
        None => None,
        Some(Value::String(sid)) => Some(sid.clone()),
        Some(other) => return Err(wrong_type(format!("{bare}.Sid"), "a string", other)),
    };
    let at = statement_location(index, sid.as_deref());
    // 2. Only the keys a role trust policy may have.
    for key in object.keys() {
        match key.as_str() {
            "Sid" | "Effect" | "Principal" | "Action" | "NotAction" | "Condition" => {}
            "Resource" | "NotResource" => {
                return Err(IamError::ProhibitedKey {
                    location: at,
                    key: if key == "Resource" {
                        "Resource"
                    } else {
                        "NotResource"
                    },
                    why: "the role itself is the resource; remove it",
                })
            }
            "NotPrincipal" => {
                return Err(IamError::ProhibitedKey {
                    location: at,
                    key: "NotPrincipal",
                    why: "name the identity provider with Principal instead",
                })
            }
            _ => {
                return Err(IamError::UnknownKey {
                    location: at,
                    key: key.clone(),
                    allowed: "Sid, Effect, Principal, Action, NotAction and Condition",
                })
            }
        }
    }
    // 3. Effect: exactly Allow or Deny.
    let effect = match object.get("Effect") {
        Some(Value::String(e)) if e == "Allow" => Effect::Allow,
        Some(Value::String(e)) if e == "Deny" => Effect::Deny,
        Some(Value::String(e)) => {
            return Err(IamError::BadEffect {
                location: at,
                found: e.clone(),
            })
        }
        Some(other) => return Err(wrong_type(format!("{at}.Effect"), "a string", other)),
        None => {
            return Err(IamError::MissingKey {
                location: at,
                key: "Effect",
                hint: "add \"Effect\": \"Allow\" or \"Deny\"",
            })
        }
    };
    // 4. Principal: required in a trust policy.
    let principal = match object.get("Principal") {
        Some(raw) => parse_principal(&format!("{at}.Principal"), raw)?,
        None => {
            return Err(IamError::MissingKey {
                location: at,
                key: "Principal",
                hint: "add {\"Federated\": \"arn:aws:iam::ACCOUNT:oidc-provider/HOST\"}",
            })
        }
    };
    // 5. Action or NotAction: exactly one.
    let action = match (object.get("Action"), object.get("NotAction")) {
        (Some(raw), None) => parse_actions(&format!("{at}.Action"), raw, false)?,
        (None, Some(raw)) => parse_actions(&format!("{at}.NotAction"), raw, true)?,
        (Some(_), Some(_)) => return Err(IamError::ActionAndNotAction { location: at }),
        (None, None) => {
            return Err(IamError::MissingKey {
                location: at,
                key: "Action",
                hint: "add \"Action\": \"sts:AssumeRoleWithWebIdentity\"",
            })
        }
    };
    // 6. Condition: optional; an empty object means no conditions.
    let conditions = match object.get("Condition") {
        None => Vec::new(),
        Some(raw) => parse_conditions(&format!("{at}.Condition"), raw, version)?,
    };
    Ok(Statement {
        sid,
        effect,
        principal,
        action,
        conditions,
    })
}

fn parse_principal(at: &str, raw: &Value) -> Result<Principal, IamError> {
    let object = match raw {
        Value::String(s) if s == "*" => return Ok(Principal::Everyone),
        Value::String(s) => {
            return Err(IamError::BadPrincipal {
                location: at.to_owned(),
                found: s.clone(),
            })
        }
        Value::Object(object) => object,
        other => return Err(wrong_type(at, "\"*\" or an object", other)),
    };
    if object.is_empty() {
        return Err(IamError::Empty {
            location: at.to_owned(),
            hint: "write {\"Federated\": \"arn:aws:iam::ACCOUNT:oidc-provider/HOST\"}",
        });
    }
    let mut ids = Vec::new();
    for (key, value) in object {
        let kind = match key.as_str() {
            "Federated" => PrincipalKind::Federated,
            "AWS" => PrincipalKind::Aws,
            "Service" => PrincipalKind::Service,
            "CanonicalUser" => PrincipalKind::CanonicalUser,
            _ => {
                return Err(IamError::UnknownPrincipalType {
                    location: at.to_owned(),
                    key: key.clone(),
                })
            }
        };
        let here = format!("{at}.{key}");
        for value in string_list(&here, value)? {
            if kind == PrincipalKind::Federated && value.contains(['*', '?']) {
                return Err(IamError::FederatedWildcard {
                    location: here,
                    value,
                });
            }
            ids.push(PrincipalId { kind, value });
        }
    }
    Ok(Principal::Listed(ids))
}

fn parse_actions(at: &str, raw: &Value, negated: bool) -> Result<ActionMatch, IamError> {
    let patterns = string_list(at, raw)?
        .into_iter()
        .map(|source| {
            let well_formed = source == "*"
                || source
                    .split_once(':')
                    .is_some_and(|(service, name)| !service.is_empty() && !name.is_empty());
            if !well_formed || source.chars().any(char::is_control) {
                return Err(IamError::BadAction {
                    location: at.to_owned(),
                    action: source,
                });
            }
            // Non-empty and free of control characters, so `Glob::new`
            // cannot refuse it; map a refusal anyway rather than unwrap.
            let glob = Glob::new(&source.to_lowercase()).map_err(|_| IamError::BadAction {
                location: at.to_owned(),
                action: source.clone(),
            })?;
            Ok(ActionPattern { source, glob })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ActionMatch { negated, patterns })
}

fn parse_conditions(
    at: &str,
    raw: &Value,
    version: Option<PolicyVersion>,
) -> Result<Vec<Condition>, IamError> {
    let operators = as_object(raw, at)?;
    let mut conditions = Vec::new();
    for (operator_text, block) in operators {
        let operator = parse_operator(at, operator_text)?;
        let here = format!("{at}.{operator_text}");
        let keys = as_object(block, &here)?;
        if keys.is_empty() {
            return Err(IamError::Empty {
                location: here,
                hint: "name at least one condition key, or remove the operator",
            });
        }
        for (key, raw_values) in keys {
            let key_at = format!("{here}[{key:?}]");
            if key.is_empty() {
                return Err(IamError::Empty {
                    location: format!("{here} key"),
                    hint: "write the condition key, e.g. token.actions.githubusercontent.com:sub",
                });
            }
            let values = condition_values(&key_at, raw_values)?;
            if version == Some(PolicyVersion::V2012) {
                if let Some(value) = values.iter().find(|v| v.contains("${")) {
                    return Err(IamError::PolicyVariable {
                        location: key_at,
                        value: value.clone(),
                    });
                }
            }
            let compiled = compile_values(&key_at, operator.kind, &values)?;
            conditions.push(Condition {
                operator,
                operator_text: operator_text.clone(),
                key: key.clone(),
                key_folded: key.to_lowercase(),
                values,
                compiled,
            });
        }
    }
    Ok(conditions)
}

/// Splits `[ForAnyValue:|ForAllValues:]Base[IfExists]`. Case-sensitive.
fn parse_operator(at: &str, text: &str) -> Result<ConditionOperator, IamError> {
    let unknown = || IamError::UnknownOperator {
        location: at.to_owned(),
        operator: text.to_owned(),
    };
    let (set, rest) = if let Some(rest) = text.strip_prefix("ForAnyValue:") {
        (Some(SetQualifier::ForAnyValue), rest)
    } else if let Some(rest) = text.strip_prefix("ForAllValues:") {
        (Some(SetQualifier::ForAllValues), rest)
    } else {
        (None, text)
    };
    let (base, if_exists) = match rest.strip_suffix("IfExists") {
        Some(base) => (base, true),
        None => (rest, false),
    };
    let kind = OperatorKind::from_name(base).ok_or_else(unknown)?;
    if kind == OperatorKind::Null && (set.is_some() || if_exists) {
        return Err(IamError::BadNullOperator {
            location: at.to_owned(),
            operator: text.to_owned(),
        });
    }
    Ok(ConditionOperator {
        set,
        kind,
        if_exists,
    })
}

/// A condition's values as text: a scalar or a non-empty array of scalars.
/// AWS compares numbers and booleans as strings; we use their JSON text.
fn condition_values(at: &str, raw: &Value) -> Result<Vec<String>, IamError> {
    let scalar = |value: &Value| match value {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(IamError::BadConditionValue {
            location: at.to_owned(),
            found: json_type(other),
        }),
    };
    match raw {
        Value::Array(items) if items.is_empty() => Err(IamError::Empty {
            location: at.to_owned(),
            hint: "list at least one value, or remove the key",
        }),
        Value::Array(items) => items.iter().map(scalar).collect(),
        other => scalar(other).map(|v| vec![v]),
    }
}

fn compile_values(at: &str, kind: OperatorKind, values: &[String]) -> Result<Compiled, IamError> {
    Ok(match kind {
        OperatorKind::StringEquals | OperatorKind::StringNotEquals => Compiled::Exact,
        OperatorKind::StringEqualsIgnoreCase | OperatorKind::StringNotEqualsIgnoreCase => {
            Compiled::Folded(values.iter().map(|v| v.to_lowercase()).collect())
        }
        OperatorKind::StringLike | OperatorKind::StringNotLike => Compiled::Like(
            values
                .iter()
                .map(|pattern| compile_like(at, pattern))
                .collect::<Result<_, _>>()?,
        ),
        OperatorKind::Bool | OperatorKind::Null => Compiled::Bools(
            values
                .iter()
                .map(|value| match value.to_ascii_lowercase().as_str() {
                    "true" => Ok(true),
                    "false" => Ok(false),
                    _ => Err(IamError::NotBoolean {
                        location: at.to_owned(),
                        value: value.clone(),
                    }),
                })
                .collect::<Result<_, _>>()?,
        ),
    })
}

fn compile_like(at: &str, pattern: &str) -> Result<Option<Glob>, IamError> {
    if pattern.is_empty() {
        return Ok(None);
    }
    let control = |offset: usize, ch: char| IamError::PatternControlChar {
        location: at.to_owned(),
        pattern: pattern.to_owned(),
        offset,
        ch,
    };
    if let Some((offset, ch)) = pattern.char_indices().find(|(_, ch)| ch.is_control()) {
        return Err(control(offset, ch));
    }
    // Checked above: non-empty and free of control characters, so this only
    // fails if `Glob` grows a new rule; report it at the start then.
    Glob::new(pattern).map(Some).map_err(|_| control(0, '\0'))
}

/// A string or a non-empty array of non-empty strings.
fn string_list(at: &str, raw: &Value) -> Result<Vec<String>, IamError> {
    let items: Vec<&Value> = match raw {
        Value::Array(items) if items.is_empty() => {
            return Err(IamError::Empty {
                location: at.to_owned(),
                hint: "list at least one value",
            })
        }
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::String(s) if s.is_empty() => Err(IamError::Empty {
                location: at.to_owned(),
                hint: "write the value, or remove it",
            }),
            Value::String(s) => Ok(s.clone()),
            other => Err(wrong_type(at, "a string or an array of strings", other)),
        })
        .collect()
}

fn as_object<'a>(value: &'a Value, at: &str) -> Result<&'a Map<String, Value>, IamError> {
    match value {
        Value::Object(object) => Ok(object),
        other => Err(wrong_type(at, "a JSON object", other)),
    }
}

fn wrong_type(at: impl Into<String>, expected: &'static str, found: &Value) -> IamError {
    IamError::WrongType {
        location: at.into(),
        expected,
        found: json_type(found),
    }
}

/// The JSON type of a value, for messages.
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
