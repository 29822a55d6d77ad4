//! Evaluation: one web-identity request against an [`IamPolicy`], deny by default, with the reason for every statement.

use super::document::{
    Compiled, Condition, Effect, IamPolicy, Principal, PrincipalKind, Statement,
};
use super::{OperatorKind, SetQualifier};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// The action STS evaluates for `AssumeRoleWithWebIdentity`.
pub const ASSUME_ROLE_WITH_WEB_IDENTITY: &str = "sts:AssumeRoleWithWebIdentity";

/// GitHub Actions' issuer as host/path: the provider for which STS also
/// offers the per-claim keys in [`GITHUB_CLAIM_KEYS`].
pub const GITHUB_ACTIONS_PROVIDER: &str = "token.actions.githubusercontent.com";

/// The GitHub claims STS exposes as `<provider>:<claim>` keys for
/// GitHub's issuer (since 2026, per `aws-sts-and-iam.md`).
pub const GITHUB_CLAIM_KEYS: [&str; 9] = [
    "actor",
    "actor_id",
    "job_workflow_ref",
    "repository",
    "repository_id",
    "workflow",
    "ref",
    "environment",
    "enterprise_id",
];

/// Claim values longer than this many bytes are cut (at a char boundary)
/// when a reason is rendered as text.
const MAX_LOGGED_VALUE_BYTES: usize = 256;

/// What STS knows when it evaluates a trust policy for web identity: the
/// provider, the action, and the condition keys built from the token.
#[derive(Clone, Debug)]
pub struct WebIdentityRequest {
    /// `arn:aws:iam::ACCOUNT:oidc-provider/<host/path>`, matched byte for
    /// byte against `Principal.Federated`.
    provider_arn: String,
    /// Normally [`ASSUME_ROLE_WITH_WEB_IDENTITY`].
    action: String,
    /// Context keys by lowercased name (keys compare case-insensitively);
    /// each holds the name as built and its values (never empty).
    context: BTreeMap<String, (String, Vec<String>)>,
}

impl WebIdentityRequest {
    /// A request with no context keys yet; add them with
    /// [`WebIdentityRequest::with_key`].
    pub fn new(provider_arn: impl Into<String>, action: impl Into<String>) -> Self {
        Self {
            provider_arn: provider_arn.into(),
            action: action.into(),
            context: BTreeMap::new(),
        }
    }

    /// The request STS would evaluate for a verified token from the
    /// provider `https://<provider_url_host_path>` registered in `account`:
    /// action `sts:AssumeRoleWithWebIdentity` and the keys
    /// `<host/path>:aud`, `:sub`, `:amr`, plus, for GitHub's issuer, the
    /// per-claim keys `actor`, `actor_id`, `job_workflow_ref`, `repository`,
    /// `repository_id`, `workflow`, `ref`, `environment`, `enterprise_id`.
    ///
    /// `provider_url_host_path` is the issuer URL without `https://` (as in
    /// the provider ARN). A string claim gives one value, an array claim
    /// (such as `aud` or `amr`) one value per string, number or boolean
    /// element; numbers and booleans become their JSON text. A claim that is
    /// missing, `null`, an object or an empty array gives no key.
    pub fn from_claims(
        provider_url_host_path: &str,
        account: &str,
        claims: &Map<String, Value>,
    ) -> Self {
        let mut request = Self::new(
            format!("arn:aws:iam::{account}:oidc-provider/{provider_url_host_path}"),
            ASSUME_ROLE_WITH_WEB_IDENTITY,
        );
        let github = provider_url_host_path == GITHUB_ACTIONS_PROVIDER;
        let names = ["aud", "sub", "amr"]
            .into_iter()
            .chain(GITHUB_CLAIM_KEYS.into_iter().filter(|_| github));
        for name in names {
            if let Some(value) = claims.get(name) {
                let key = format!("{provider_url_host_path}:{name}");
                request = request.with_key(&key, claim_values(value));
            }
        }
        request
    }

    /// Sets a context key (replacing any key of the same name in any case).
    /// An empty `values` removes the key: IAM sees an empty set as absent.
    #[must_use]
    pub fn with_key(mut self, key: &str, values: Vec<String>) -> Self {
        let folded = key.to_lowercase();
        if values.is_empty() {
            self.context.remove(&folded);
        } else {
            self.context.insert(folded, (key.to_owned(), values));
        }
        self
    }

    /// The provider ARN.
    pub fn provider_arn(&self) -> &str {
        &self.provider_arn
    }

    /// The action.
    pub fn action(&self) -> &str {
        &self.action
    }

    /// A context key's values, looked up case-insensitively.
    pub fn key(&self, name: &str) -> Option<&[String]> {
        self.context
            .get(&name.to_lowercase())
            .map(|(_, values)| values.as_slice())
    }

    /// Every context key (as built) and its values, sorted by lowercased name.
    pub fn keys(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.context
            .values()
            .map(|(key, values)| (key.as_str(), values.as_slice()))
    }
}

/// A claim's values as context-key text.
fn claim_values(value: &Value) -> Vec<String> {
    fn scalar(value: &Value) -> Option<String> {
        match value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Null | Value::Array(_) | Value::Object(_) => None,
        }
    }
    match value {
        Value::Array(items) => items.iter().filter_map(scalar).collect(),
        other => scalar(other).into_iter().collect(),
    }
}

/// The outcome of [`IamPolicy::evaluate`]. Deny is listed first and there is
/// no `Default`: only an applicable Allow with no applicable Deny allows.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IamDecision {
    /// Explicit or implicit deny.
    Deny(IamDenial),
    /// A statement allowed and none denied.
    Allow(IamAllow),
}

impl IamDecision {
    /// Whether this is [`IamDecision::Allow`].
    pub fn is_allow(&self) -> bool {
        matches!(self, Self::Allow(_))
    }

    /// The denial, if this is a deny.
    pub fn denial(&self) -> Option<&IamDenial> {
        match self {
            Self::Deny(denial) => Some(denial),
            Self::Allow(_) => None,
        }
    }

    /// Every statement's outcome, in document order.
    pub fn outcomes(&self) -> &[StatementOutcome] {
        match self {
            Self::Deny(denial) => &denial.outcomes,
            Self::Allow(allow) => &allow.outcomes,
        }
    }
}

/// Why a request was allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IamAllow {
    /// The first Allow statement that applied.
    pub statement: StatementRef,
    /// Every statement's outcome, in document order.
    pub outcomes: Vec<StatementOutcome>,
}

/// Why a request was denied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IamDenial {
    /// Explicit (a Deny applied) or implicit (no Allow applied).
    pub cause: DenialCause,
    /// Every statement's outcome, in document order; for an implicit deny
    /// each says why it did not apply.
    pub outcomes: Vec<StatementOutcome>,
}

/// The kind of deny.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DenialCause {
    /// This Deny statement applied (the first one, if several did).
    ExplicitDeny(StatementRef),
    /// No Allow statement applied.
    NoMatchingAllow,
}

/// Names a statement: its index in the document and its `Sid`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementRef {
    /// Zero-based position in `Statement`.
    pub index: usize,
    /// `Sid`, if any.
    pub sid: Option<String>,
}

/// Whether one statement applied, and if not, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementOutcome {
    /// The statement.
    pub statement: StatementRef,
    /// Its effect.
    pub effect: Effect,
    /// `None` if the statement applied; otherwise the first check it failed.
    pub mismatch: Option<Mismatch>,
}

/// The first check a statement failed, in the order they run: principal,
/// action, then conditions in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// The `Principal` does not name the request's provider.
    Principal {
        /// The request's provider ARN.
        provider_arn: String,
    },
    /// The `Action`/`NotAction` does not cover the request's action.
    Action {
        /// The request's action.
        action: String,
    },
    /// A condition does not hold.
    Condition(ConditionFailure),
}

/// A condition that did not hold. The request values are token content:
/// escape them before printing (the `Display` impls do).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionFailure {
    /// The operator as written, e.g. `ForAnyValue:StringLike`.
    pub operator: String,
    /// The condition key as written in the policy.
    pub key: String,
    /// The request's values for the key; `None` when the key is missing.
    pub request_values: Option<Vec<String>>,
    /// The policy's values, as text.
    pub policy_values: Vec<String>,
}

impl IamPolicy {
    /// Decides `request`. Every statement is checked (no short-circuit), so
    /// the decision carries each one's outcome.
    pub fn evaluate(&self, request: &WebIdentityRequest) -> IamDecision {
        // 1. Each statement: principal, then action, then every condition.
        let outcomes: Vec<StatementOutcome> = self
            .statements()
            .iter()
            .enumerate()
            .map(|(index, statement)| StatementOutcome {
                statement: StatementRef {
                    index,
                    sid: statement.sid().map(str::to_owned),
                },
                effect: statement.effect(),
                mismatch: statement_mismatch(statement, request),
            })
            .collect();
        let applied = |effect: Effect| {
            outcomes
                .iter()
                .find(|o| o.effect == effect && o.mismatch.is_none())
                .map(|o| o.statement.clone())
        };
        // 2. An applicable Deny wins over everything.
        if let Some(statement) = applied(Effect::Deny) {
            return IamDecision::Deny(IamDenial {
                cause: DenialCause::ExplicitDeny(statement),
                outcomes,
            });
        }
        // 3. Otherwise an applicable Allow allows.
        if let Some(statement) = applied(Effect::Allow) {
            return IamDecision::Allow(IamAllow {
                statement,
                outcomes,
            });
        }
        // 4. Otherwise (including no statements at all) deny implicitly.
        IamDecision::Deny(IamDenial {
            cause: DenialCause::NoMatchingAllow,
            outcomes,
        })
    }
}

/// The first check `statement` fails for `request`, or `None` if it applies.
fn statement_mismatch(statement: &Statement, request: &WebIdentityRequest) -> Option<Mismatch> {
    if !principal_matches(statement.principal(), request.provider_arn()) {
        return Some(Mismatch::Principal {
            provider_arn: request.provider_arn().to_owned(),
        });
    }
    if !statement.action().applies_to(request.action()) {
        return Some(Mismatch::Action {
            action: request.action().to_owned(),
        });
    }
    statement.conditions().iter().find_map(|condition| {
        let present = request
            .context
            .get(&condition.key_folded)
            .map(|(_, values)| values.as_slice());
        if condition_holds(condition, present) {
            None
        } else {
            Some(Mismatch::Condition(ConditionFailure {
                operator: condition.operator_text().to_owned(),
                key: condition.key().to_owned(),
                request_values: present.map(<[String]>::to_vec),
                policy_values: condition.values().to_vec(),
            }))
        }
    })
}

/// `"*"` and `{"AWS": "*"}` name everyone; otherwise a `Federated` entry
/// must equal the provider ARN byte for byte.
fn principal_matches(principal: &Principal, provider_arn: &str) -> bool {
    match principal {
        Principal::Everyone => true,
        Principal::Listed(ids) => ids.iter().any(|id| match id.kind {
            PrincipalKind::Federated => id.value == provider_arn,
            PrincipalKind::Aws => id.value == "*",
            PrincipalKind::Service | PrincipalKind::CanonicalUser => false,
        }),
    }
}

/// Whether one condition holds, given the request's values for its key
/// (`None` when missing; an empty slice counts as missing).
fn condition_holds(condition: &Condition, present: Option<&[String]>) -> bool {
    let operator = condition.operator();
    let present = present.filter(|values| !values.is_empty());
    // 1. Null only asks whether the key exists.
    if operator.kind == OperatorKind::Null {
        let absent = present.is_none();
        return match &condition.compiled {
            Compiled::Bools(wants) => wants.contains(&absent),
            _ => false,
        };
    }
    let negated = operator.kind.is_negated();
    // A request value satisfies the operator: for a positive operator it
    // matches some policy value; for a negated one it matches none.
    let satisfies = |value: &String| matches_any(condition, value) != negated;
    match (operator.set, present) {
        // 2. A missing key: IfExists holds, then the set rules, then the
        //    single-valued rule (negated true, positive false).
        (_, None) if operator.if_exists => true,
        (Some(SetQualifier::ForAnyValue), None) => false,
        (Some(SetQualifier::ForAllValues), None) => true,
        (None, None) => negated,
        // 3. A present key under a set operator.
        (Some(SetQualifier::ForAnyValue), Some(values)) => values.iter().any(satisfies),
        (Some(SetQualifier::ForAllValues), Some(values)) => values.iter().all(satisfies),
        // 4. A present key without one: positive operators hold if any value
        //    matches; negated ones are their exact negation (no value
        //    matches). For a single value both readings agree.
        (None, Some(values)) if negated => values.iter().all(satisfies),
        (None, Some(values)) => values.iter().any(satisfies),
    }
}

/// Whether `value` matches some policy value under the operator's base
/// comparison (ignoring negation).
fn matches_any(condition: &Condition, value: &str) -> bool {
    match &condition.compiled {
        Compiled::Exact => condition.values().iter().any(|p| p == value),
        Compiled::Folded(folded) => {
            let value = value.to_lowercase();
            folded.contains(&value)
        }
        Compiled::Like(patterns) => patterns.iter().any(|p| match p {
            Some(glob) => glob.is_match(value),
            None => value.is_empty(),
        }),
        Compiled::Bools(wants) => {
            let got = match value.to_ascii_lowercase().as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            };
            got.is_some_and(|got| wants.contains(&got))
        }
    }
}

impl fmt::Display for StatementRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sid {
            Some(sid) => write!(f, "Statement[{}] (Sid {})", self.index, quote(sid)),
            None => write!(f, "Statement[{}]", self.index),
        }
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Principal { provider_arn } => {
                write!(f, "Principal does not name {}", quote(provider_arn))
            }
            Self::Action { action } => write!(f, "Action does not cover {}", quote(action)),
            Self::Condition(failure) => failure.fmt(f),
        }
    }
}

impl fmt::Display for ConditionFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: request ", self.operator, quote(&self.key))?;
        match &self.request_values {
            Some(values) => write!(f, "{}", quote_list(values))?,
            None => f.write_str("has no such key")?,
        }
        write!(f, ", policy {}", quote_list(&self.policy_values))
    }
}

impl fmt::Display for StatementOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let effect = match self.effect {
            Effect::Allow => "Allow",
            Effect::Deny => "Deny",
        };
        match &self.mismatch {
            None => write!(f, "{} {effect} applies", self.statement),
            Some(why) => write!(f, "{} {effect} does not apply: {why}", self.statement),
        }
    }
}

impl fmt::Display for IamDenial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            DenialCause::ExplicitDeny(statement) => write!(f, "explicit deny by {statement}"),
            DenialCause::NoMatchingAllow => {
                f.write_str("no Allow statement applies")?;
                let mut misses = self
                    .outcomes
                    .iter()
                    .filter(|o| o.effect == Effect::Allow && o.mismatch.is_some());
                if let Some(first) = misses.next() {
                    write!(f, ": {first}")?;
                }
                for miss in misses {
                    write!(f, "; {miss}")?;
                }
                Ok(())
            }
        }
    }
}

/// Renders a value for a log line; see [`crate::text::quote`].
fn quote(text: &str) -> String {
    crate::text::quote(text, MAX_LOGGED_VALUE_BYTES)
}

fn quote_list(values: &[String]) -> String {
    let items: Vec<String> = values.iter().map(|v| quote(v)).collect();
    format!("[{}]", items.join(", "))
}
