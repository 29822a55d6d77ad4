//! AWS IAM trust-policy documents for web identity: parsed once into checked types, evaluated the way STS evaluates `AssumeRoleWithWebIdentity`.
//!
//! ```json
//! {"Version":"2012-10-17","Statement":[{"Effect":"Allow",
//!  "Principal":{"Federated":"arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"},
//!  "Action":"sts:AssumeRoleWithWebIdentity",
//!  "Condition":{"StringEquals":{"token.actions.githubusercontent.com:aud":"sts.amazonaws.com"},
//!               "StringLike":{"token.actions.githubusercontent.com:sub":"repo:org/repo:*"}}}]}
//! ```
//!
//! [`IamPolicy::parse`] (also reachable as [`TrustPolicy::parse`]) turns the
//! JSON into an [`IamPolicy`]; [`IamPolicy::evaluate`] decides one
//! [`WebIdentityRequest`] and says why in an [`IamDecision`].
//!
//! # Semantics implemented
//!
//! Facts from `shared/reference/aws-sts-and-iam.md` ("Trust-policy grammar
//! for web identity") unless marked as our choice:
//!
//! - A statement applies when its `Principal` names the request's provider
//!   ARN (`{"Federated": ARN}`, compared byte for byte; `"*"` and
//!   `{"AWS": "*"}` name everyone), its `Action` matches (or its
//!   `NotAction` does not), and every condition holds.
//! - Several operators, and several keys under one operator, are ANDed;
//!   several values for one key are ORed.
//! - Explicit Deny wins over any Allow; with no applicable Allow the
//!   decision is an implicit deny.
//! - Condition key names compare case-insensitively. `StringEquals`,
//!   `StringNotEquals`, `StringLike` and `StringNotLike` compare values
//!   case-sensitively; the `IgnoreCase` operators compare Unicode-lowercased
//!   text (our choice; AWS does not document the folding). `Bool` compares
//!   `true`/`false` case-insensitively. Actions compare case-insensitively,
//!   with `*` and `?` wildcards.
//! - A missing key makes the positive operators false and the negated ones
//!   (`StringNotEquals`, `StringNotEqualsIgnoreCase`, `StringNotLike`) true.
//!   `…IfExists` makes any condition true when its key is missing. `Null`
//!   with `true` holds when the key is missing, with `false` when present.
//! - `ForAnyValue:` holds when some request value satisfies the operator
//!   (for a negated operator: some request value matches none of the policy
//!   values), and is false on a missing or empty key. `ForAllValues:` holds
//!   when every request value satisfies it, and is **true** on a missing or
//!   empty key. A missing key with `IfExists` is true under either prefix.
//! - **Multi-valued keys without a set prefix** (our choice, since AWS
//!   documents only that multivalued keys "require" a set operator, in the
//!   IAM User Guide page "Single-valued vs. multivalued context keys"): a
//!   positive operator holds when any request value matches any policy
//!   value; a negated operator is its exact negation, so it holds only when
//!   no request value matches any policy value.
//! - A key present with no values (an empty array claim) counts as missing.
//!
//! # What parsing refuses
//!
//! Anything AWS would refuse in a role trust policy that we know of
//! (`Resource`, `NotResource`, `NotPrincipal`, a missing `Principal` or
//! `Action`, unknown keys), and anything we could not evaluate faithfully,
//! so that a policy never silently means less than it says: unknown
//! operators, `Null` with a set prefix or `IfExists`, policy variables
//! (`${…}` under version 2012-10-17), wildcards in `Federated`, non-boolean
//! `Bool`/`Null` values, empty lists or operator blocks, control characters
//! in `StringLike` patterns, and duplicate JSON keys at any depth.

mod document;
mod eval;
#[cfg(test)]
mod tests;

pub use document::{
    ActionMatch, Condition, ConditionOperator, Effect, IamPolicy, OperatorKind, PolicyVersion,
    Principal, PrincipalId, PrincipalKind, SetQualifier, Statement, TrustPolicy,
};
pub use eval::{
    ConditionFailure, DenialCause, IamAllow, IamDecision, IamDenial, Mismatch, StatementOutcome,
    StatementRef, WebIdentityRequest, ASSUME_ROLE_WITH_WEB_IDENTITY, GITHUB_ACTIONS_PROVIDER,
    GITHUB_CLAIM_KEYS,
};

/// Why an IAM trust-policy document was refused. Each message says where
/// (`Statement[1] (Sid "X")`, an operator, a key) and how to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IamError {
    /// Not JSON, trailing data, or a duplicate key at any depth.
    #[error(
        "trust policy is not valid JSON (duplicate keys are refused at any depth): {0}; \
         fix the document so that it parses as one JSON object"
    )]
    Json(#[source] serde_json::Error),

    /// A member has the wrong JSON type.
    #[error("{location} must be {expected}, but is {found}")]
    WrongType {
        /// Where in the document, e.g. `Statement[0].Effect`.
        location: String,
        /// What is accepted.
        expected: &'static str,
        /// The JSON type found.
        found: &'static str,
    },

    /// A key the IAM policy grammar does not have.
    #[error("{location} has unknown key {key:?}; the keys allowed there are {allowed}")]
    UnknownKey {
        /// Where in the document.
        location: String,
        /// The key as written.
        key: String,
        /// The keys that are accepted there.
        allowed: &'static str,
    },

    /// A key IAM knows but refuses in a role trust policy.
    #[error("{location} has {key:?}, which a role trust policy must not have: {why}")]
    ProhibitedKey {
        /// Where in the document.
        location: String,
        /// The key as written.
        key: &'static str,
        /// Why, and what to write instead.
        why: &'static str,
    },

    /// A required key is missing.
    #[error("{location} is missing {key:?}; {hint}")]
    MissingKey {
        /// Where in the document.
        location: String,
        /// The missing key.
        key: &'static str,
        /// What to add.
        hint: &'static str,
    },

    /// `Version` is not one IAM accepts.
    #[error(
        "Version {found:?} is not an IAM policy language version; \
         use \"2012-10-17\" (or the legacy \"2008-10-17\")"
    )]
    BadVersion {
        /// The value as written.
        found: String,
    },

    /// `Effect` is not exactly `Allow` or `Deny`.
    #[error("{location}.Effect is {found:?}; write exactly \"Allow\" or \"Deny\"")]
    BadEffect {
        /// The statement.
        location: String,
        /// The value as written.
        found: String,
    },

    /// An empty array, object or string where something must be named.
    #[error("{location} is empty, so it names nothing; {hint}")]
    Empty {
        /// Where in the document.
        location: String,
        /// What to write.
        hint: &'static str,
    },

    /// Both `Action` and `NotAction`.
    #[error("{location} has both Action and NotAction; keep exactly one")]
    ActionAndNotAction {
        /// The statement.
        location: String,
    },

    /// An action that is neither `*` nor `service:name`.
    #[error(
        "{location} action {action:?} is not \"*\" or \"service:Action\"; \
         write e.g. \"sts:AssumeRoleWithWebIdentity\""
    )]
    BadAction {
        /// Where in the document.
        location: String,
        /// The action as written.
        action: String,
    },

    /// A principal type other than `Federated`, `AWS`, `Service` or
    /// `CanonicalUser`.
    #[error(
        "{location} has unknown principal type {key:?}; \
         web identity uses {{\"Federated\": \"arn:aws:iam::ACCOUNT:oidc-provider/HOST\"}}"
    )]
    UnknownPrincipalType {
        /// The statement's `Principal`.
        location: String,
        /// The type as written.
        key: String,
    },

    /// `Principal` is a string other than `"*"`.
    #[error(
        "{location} is the string {found:?}; write \"*\" or an object such as \
         {{\"Federated\": \"arn:aws:iam::ACCOUNT:oidc-provider/HOST\"}}"
    )]
    BadPrincipal {
        /// The statement's `Principal`.
        location: String,
        /// The value as written.
        found: String,
    },

    /// A wildcard in a `Federated` principal, which AWS does not document
    /// and we refuse rather than guess.
    #[error(
        "{location} value {value:?} has a wildcard; name the identity provider's ARN exactly, \
         e.g. arn:aws:iam::ACCOUNT:oidc-provider/token.actions.githubusercontent.com"
    )]
    FederatedWildcard {
        /// Where in the document.
        location: String,
        /// The value as written.
        value: String,
    },

    /// A condition operator that is not one of the supported ones.
    #[error(
        "{location} has unknown condition operator {operator:?}; supported: StringEquals, \
         StringNotEquals, StringEqualsIgnoreCase, StringNotEqualsIgnoreCase, StringLike, \
         StringNotLike, Bool (each with an optional IfExists suffix and ForAnyValue:/ForAllValues: \
         prefix) and Null; operator names are case-sensitive"
    )]
    UnknownOperator {
        /// The statement's `Condition`.
        location: String,
        /// The operator as written.
        operator: String,
    },

    /// `Null` with a `ForAnyValue:`/`ForAllValues:` prefix or an `IfExists`
    /// suffix, which would make it meaningless.
    #[error(
        "{location} operator {operator:?} is not valid: Null already tests whether a key \
         exists, so it takes no ForAnyValue:/ForAllValues: prefix and no IfExists suffix; \
         write \"Null\""
    )]
    BadNullOperator {
        /// The statement's `Condition`.
        location: String,
        /// The operator as written.
        operator: String,
    },

    /// A condition value of a type conditions do not take (null, object,
    /// nested array).
    #[error(
        "{location} value is {found}; write a string, a boolean, a number, \
         or an array of them"
    )]
    BadConditionValue {
        /// The condition key.
        location: String,
        /// The JSON type found.
        found: &'static str,
    },

    /// A `Bool` or `Null` value other than true or false.
    #[error("{location} value {value:?} is not a boolean; write true or false")]
    NotBoolean {
        /// The condition key.
        location: String,
        /// The value as written.
        value: String,
    },

    /// A `${…}` policy variable, which this evaluator does not substitute.
    #[error(
        "{location} value {value:?} uses a policy variable (${{…}}), which tokenmint does not \
         evaluate; write the literal value instead"
    )]
    PolicyVariable {
        /// The condition key.
        location: String,
        /// The value as written.
        value: String,
    },

    /// A `StringLike`/`StringNotLike` pattern with a control character.
    #[error(
        "{location} pattern {pattern:?} contains control character {ch:?} at byte {offset}; \
         remove it (only * and ? are special)"
    )]
    PatternControlChar {
        /// The condition key.
        location: String,
        /// The pattern as written.
        pattern: String,
        /// Byte offset of the character.
        offset: usize,
        /// The control character.
        ch: char,
    },
}
