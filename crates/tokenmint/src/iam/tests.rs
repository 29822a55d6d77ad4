//! Tests for `crate::iam`: the operator table as AWS documents it, statement combination, parse errors, and a real GitHub trust policy.

use super::*;
use serde_json::{json, Map, Value};

const ACCOUNT: &str = "123456789012";
const PROVIDER: &str = "arn:aws:iam::123456789012:oidc-provider/idp.example.com";
const KEY: &str = "idp.example.com:k";

/// The request's values for [`KEY`].
#[derive(Clone, Copy, Debug)]
enum Req {
    /// The key is not in the request.
    Absent,
    /// The key is in the request with an empty set (treated as absent).
    Empty,
    /// A single-valued key.
    One(&'static str),
    /// A multi-valued key.
    Many(&'static [&'static str]),
}

/// One row of the operator table: `{"Condition": {op: {KEY: values}}}` in an
/// otherwise matching Allow statement, against a request whose [`KEY`] is
/// `req`; `allow` is whether the condition holds.
struct Case {
    op: &'static str,
    values: &'static str,
    req: Req,
    allow: bool,
}

const fn case(op: &'static str, values: &'static str, req: Req, allow: bool) -> Case {
    Case {
        op,
        values,
        req,
        allow,
    }
}

use Req::{Absent, Empty, Many, One};

/// Each row as AWS documents the operator: key present or absent, single-
/// or multi-valued, expected result.
const OPERATOR_TABLE: &[Case] = &[
    // StringEquals: exact, case-sensitive; values ORed; missing key false.
    case("StringEquals", r#""a""#, One("a"), true),
    case("StringEquals", r#""a""#, One("A"), false),
    case("StringEquals", r#""a""#, One("ab"), false),
    case("StringEquals", r#"["a", "b"]"#, One("b"), true),
    case("StringEquals", r#"["a", "b"]"#, One("c"), false),
    case("StringEquals", r#""a""#, Absent, false),
    case("StringEquals", r#""a""#, Empty, false),
    // Multi-valued key without a set prefix: any request value matching.
    case("StringEquals", r#""a""#, Many(&["x", "a"]), true),
    case("StringEquals", r#""a""#, Many(&["x", "y"]), false),
    // Numbers and booleans in the policy compare as their text.
    case("StringEquals", "42", One("42"), true),
    case("StringEquals", "true", One("true"), true),
    case("StringEquals", "[1, \"b\"]", One("1"), true),
    case("StringEqualsIfExists", r#""a""#, Absent, true),
    case("StringEqualsIfExists", r#""a""#, Empty, true),
    case("StringEqualsIfExists", r#""a""#, One("a"), true),
    case("StringEqualsIfExists", r#""a""#, One("b"), false),
    // StringNotEquals: negation; a missing key is true.
    case("StringNotEquals", r#""a""#, One("a"), false),
    case("StringNotEquals", r#""a""#, One("b"), true),
    case("StringNotEquals", r#""a""#, One("A"), true),
    case("StringNotEquals", r#"["a", "b"]"#, One("b"), false),
    case("StringNotEquals", r#""a""#, Absent, true),
    case("StringNotEquals", r#""a""#, Empty, true),
    case("StringNotEquals", r#""a""#, Many(&["a", "b"]), false),
    case("StringNotEquals", r#""a""#, Many(&["b", "c"]), true),
    case("StringNotEqualsIfExists", r#""a""#, Absent, true),
    case("StringNotEqualsIfExists", r#""a""#, One("a"), false),
    case("StringNotEqualsIfExists", r#""a""#, One("b"), true),
    // StringEqualsIgnoreCase and its negation.
    case(
        "StringEqualsIgnoreCase",
        r#""Repo:Org""#,
        One("repo:ORG"),
        true,
    ),
    case("StringEqualsIgnoreCase", r#""abc""#, One("abd"), false),
    case("StringEqualsIgnoreCase", r#""abc""#, Absent, false),
    case(
        "StringEqualsIgnoreCase",
        r#""abc""#,
        Many(&["x", "ABC"]),
        true,
    ),
    case("StringEqualsIgnoreCaseIfExists", r#""abc""#, Absent, true),
    case(
        "StringEqualsIgnoreCaseIfExists",
        r#""abc""#,
        One("ABC"),
        true,
    ),
    case(
        "StringEqualsIgnoreCaseIfExists",
        r#""abc""#,
        One("x"),
        false,
    ),
    case("StringNotEqualsIgnoreCase", r#""abc""#, One("ABC"), false),
    case("StringNotEqualsIgnoreCase", r#""abc""#, One("x"), true),
    case("StringNotEqualsIgnoreCase", r#""abc""#, Absent, true),
    case(
        "StringNotEqualsIgnoreCaseIfExists",
        r#""abc""#,
        Absent,
        true,
    ),
    case(
        "StringNotEqualsIgnoreCaseIfExists",
        r#""abc""#,
        One("aBc"),
        false,
    ),
    // StringLike: case-sensitive, whole string, `*` and `?`.
    case(
        "StringLike",
        r#""repo:org/repo:*""#,
        One("repo:org/repo:ref:refs/heads/main"),
        true,
    ),
    case(
        "StringLike",
        r#""repo:org/repo:*""#,
        One("repo:org/repo2:ref:refs/heads/main"),
        false,
    ),
    case(
        "StringLike",
        r#""repo:org/repo:*""#,
        One("REPO:org/repo:x"),
        false,
    ),
    case("StringLike", r#""v?""#, One("v1"), true),
    case("StringLike", r#""v?""#, One("v12"), false),
    case("StringLike", r#""exact""#, One("exact"), true),
    case("StringLike", r#""""#, One(""), true),
    case("StringLike", r#""""#, One("x"), false),
    case("StringLike", r#"["a*", "b*"]"#, One("bee"), true),
    case("StringLike", r#""a*""#, Absent, false),
    case("StringLike", r#""a*""#, Many(&["x", "ab"]), true),
    case("StringLikeIfExists", r#""a*""#, Absent, true),
    case("StringLikeIfExists", r#""a*""#, One("ab"), true),
    case("StringLikeIfExists", r#""a*""#, One("b"), false),
    // StringNotLike: negation; a missing key is true.
    case("StringNotLike", r#""repo:org/*""#, One("repo:evil/x"), true),
    case("StringNotLike", r#""repo:org/*""#, One("repo:org/x"), false),
    case("StringNotLike", r#""repo:org/*""#, Absent, true),
    case(
        "StringNotLike",
        r#""repo:org/*""#,
        Many(&["repo:org/a", "evil"]),
        false,
    ),
    case(
        "StringNotLike",
        r#""repo:org/*""#,
        Many(&["evil", "bad"]),
        true,
    ),
    case("StringNotLikeIfExists", r#""repo:org/*""#, Absent, true),
    case(
        "StringNotLikeIfExists",
        r#""repo:org/*""#,
        One("repo:org/x"),
        false,
    ),
    case(
        "StringNotLikeIfExists",
        r#""repo:org/*""#,
        One("evil"),
        true,
    ),
    // Bool: true/false, case-insensitive; missing key false.
    case("Bool", "true", One("true"), true),
    case("Bool", r#""true""#, One("TRUE"), true),
    case("Bool", r#""False""#, One("false"), true),
    case("Bool", "true", One("false"), false),
    case("Bool", "true", One("yes"), false),
    case("Bool", "true", Absent, false),
    case("BoolIfExists", "true", Absent, true),
    case("BoolIfExists", "true", One("true"), true),
    case("BoolIfExists", "true", One("false"), false),
    // Null: true means absent, false means present.
    case("Null", "true", Absent, true),
    case("Null", "true", Empty, true),
    case("Null", "true", One("a"), false),
    case("Null", "false", One("a"), true),
    case("Null", r#""false""#, Many(&["a", "b"]), true),
    case("Null", "false", Absent, false),
    // ForAnyValue: some request value matches some policy value; false on
    // an empty or absent set.
    case(
        "ForAnyValue:StringEquals",
        r#""b""#,
        Many(&["a", "b"]),
        true,
    ),
    case(
        "ForAnyValue:StringEquals",
        r#"["c", "d"]"#,
        Many(&["a", "b"]),
        false,
    ),
    case("ForAnyValue:StringEquals", r#""a""#, One("a"), true),
    case("ForAnyValue:StringEquals", r#""a""#, Absent, false),
    case("ForAnyValue:StringEquals", r#""a""#, Empty, false),
    case("ForAnyValue:StringEqualsIfExists", r#""a""#, Absent, true),
    case(
        "ForAnyValue:StringEqualsIfExists",
        r#""a""#,
        Many(&["x"]),
        false,
    ),
    case(
        "ForAnyValue:StringEqualsIgnoreCase",
        r#""a""#,
        Many(&["x", "A"]),
        true,
    ),
    case(
        "ForAnyValue:StringLike",
        r#""repo:org/*""#,
        Many(&["x", "repo:org/1"]),
        true,
    ),
    case(
        "ForAnyValue:StringLike",
        r#""repo:org/*""#,
        Many(&["x", "y"]),
        false,
    ),
    case("ForAnyValue:StringLike", r#""repo:org/*""#, Absent, false),
    case(
        "ForAnyValue:StringLikeIfExists",
        r#""repo:org/*""#,
        Absent,
        true,
    ),
    // Negated under ForAnyValue: some request value matches no policy value.
    case(
        "ForAnyValue:StringNotEquals",
        r#""a""#,
        Many(&["a", "b"]),
        true,
    ),
    case("ForAnyValue:StringNotEquals", r#""a""#, Many(&["a"]), false),
    case("ForAnyValue:StringNotEquals", r#""a""#, Absent, false),
    case(
        "ForAnyValue:StringNotLike",
        r#""repo:org/*""#,
        Many(&["repo:org/a", "x"]),
        true,
    ),
    case(
        "ForAnyValue:StringNotLike",
        r#""repo:org/*""#,
        Many(&["repo:org/a"]),
        false,
    ),
    case(
        "ForAnyValue:StringNotEqualsIgnoreCase",
        r#""a""#,
        Many(&["A", "b"]),
        true,
    ),
    case(
        "ForAnyValue:StringNotEqualsIgnoreCase",
        r#""a""#,
        Many(&["A"]),
        false,
    ),
    case("ForAnyValue:Bool", "true", Many(&["false", "true"]), true),
    case("ForAnyValue:BoolIfExists", "true", Absent, true),
    // ForAllValues: every request value matches some policy value; true on
    // an empty or absent set.
    case(
        "ForAllValues:StringEquals",
        r#"["a", "b", "c"]"#,
        Many(&["a", "b"]),
        true,
    ),
    case(
        "ForAllValues:StringEquals",
        r#"["a", "b"]"#,
        Many(&["a", "x"]),
        false,
    ),
    case("ForAllValues:StringEquals", r#""a""#, One("a"), true),
    case("ForAllValues:StringEquals", r#""a""#, Absent, true),
    case("ForAllValues:StringEquals", r#""a""#, Empty, true),
    case("ForAllValues:StringEqualsIfExists", r#""a""#, Absent, true),
    case(
        "ForAllValues:StringEqualsIfExists",
        r#""a""#,
        Many(&["a", "z"]),
        false,
    ),
    case(
        "ForAllValues:StringEqualsIgnoreCase",
        r#"["a", "b"]"#,
        Many(&["A", "B"]),
        true,
    ),
    case(
        "ForAllValues:StringLike",
        r#""repo:org/*""#,
        Many(&["repo:org/1", "repo:org/2"]),
        true,
    ),
    case(
        "ForAllValues:StringLike",
        r#""repo:org/*""#,
        Many(&["repo:org/1", "evil"]),
        false,
    ),
    case("ForAllValues:StringLike", r#""repo:org/*""#, Absent, true),
    // Negated under ForAllValues: no request value matches any policy value.
    case(
        "ForAllValues:StringNotEquals",
        r#""a""#,
        Many(&["b", "c"]),
        true,
    ),
    case(
        "ForAllValues:StringNotEquals",
        r#""a""#,
        Many(&["a", "b"]),
        false,
    ),
    case("ForAllValues:StringNotEquals", r#""a""#, Absent, true),
    case(
        "ForAllValues:StringNotEqualsIgnoreCase",
        r#""a""#,
        Many(&["A"]),
        false,
    ),
    case(
        "ForAllValues:StringNotLike",
        r#""repo:org/*""#,
        Many(&["x", "y"]),
        true,
    ),
    case(
        "ForAllValues:StringNotLike",
        r#""repo:org/*""#,
        Many(&["x", "repo:org/y"]),
        false,
    ),
    case(
        "ForAllValues:StringNotLikeIfExists",
        r#""repo:org/*""#,
        Absent,
        true,
    ),
    case("ForAllValues:Bool", "true", Many(&["true", "TRUE"]), true),
    case("ForAllValues:Bool", "true", Many(&["true", "false"]), false),
];

/// A one-statement Allow policy with one condition on [`KEY`].
fn single_condition_policy(op: &str, values: &str) -> IamPolicy {
    let text = format!(
        r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow",
            "Principal":{{"Federated":"{PROVIDER}"}},
            "Action":"sts:AssumeRoleWithWebIdentity",
            "Condition":{{"{op}":{{"{KEY}":{values}}}}}}}}}"#
    );
    IamPolicy::parse(&text).unwrap_or_else(|e| panic!("{op} {values}: {e}"))
}

fn request(req: Req) -> WebIdentityRequest {
    let base = WebIdentityRequest::new(PROVIDER, ASSUME_ROLE_WITH_WEB_IDENTITY);
    let values: Vec<String> = match req {
        Absent => return base,
        Empty => Vec::new(),
        One(v) => vec![v.to_owned()],
        Many(vs) => vs.iter().map(|v| (*v).to_owned()).collect(),
    };
    base.with_key(KEY, values)
}

#[test]
fn operator_table() {
    let mut failures = Vec::new();
    for (row, c) in OPERATOR_TABLE.iter().enumerate() {
        let policy = single_condition_policy(c.op, c.values);
        let decision = policy.evaluate(&request(c.req));
        if decision.is_allow() != c.allow {
            failures.push(format!(
                "row {row}: {} {} with {:?}: expected {}, got {decision:?}",
                c.op, c.values, c.req, c.allow
            ));
        }
        // A failed condition is always reported as the reason.
        if !c.allow {
            let Some(IamDenial {
                cause: DenialCause::NoMatchingAllow,
                outcomes,
            }) = decision.denial()
            else {
                failures.push(format!("row {row}: not an implicit deny"));
                continue;
            };
            match &outcomes[0].mismatch {
                Some(Mismatch::Condition(f)) if f.operator == c.op && f.key == KEY => {}
                other => failures.push(format!("row {row}: reason {other:?}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn operator_table_covers_every_operator_and_variant() {
    let bases = [
        "StringEquals",
        "StringNotEquals",
        "StringEqualsIgnoreCase",
        "StringNotEqualsIgnoreCase",
        "StringLike",
        "StringNotLike",
        "Bool",
    ];
    let has = |op: &str| OPERATOR_TABLE.iter().any(|c| c.op == op);
    for base in bases {
        assert!(has(base), "{base}");
        assert!(has(&format!("{base}IfExists")), "{base}IfExists");
        assert!(has(&format!("ForAnyValue:{base}")), "ForAnyValue:{base}");
        assert!(has(&format!("ForAllValues:{base}")), "ForAllValues:{base}");
        // Each positive base appears with an absent key.
        assert!(
            OPERATOR_TABLE
                .iter()
                .any(|c| c.op == base && matches!(c.req, Absent)),
            "{base} absent"
        );
    }
    assert!(has("Null"));
}

#[test]
fn condition_keys_compare_case_insensitively() {
    let policy = single_condition_policy("StringEquals", r#""a""#);
    let upper = WebIdentityRequest::new(PROVIDER, ASSUME_ROLE_WITH_WEB_IDENTITY)
        .with_key("IDP.Example.COM:K", vec!["a".to_owned()]);
    assert!(policy.evaluate(&upper).is_allow());
    let text = format!(
        r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow",
            "Principal":{{"Federated":"{PROVIDER}"}},"Action":"sts:AssumeRoleWithWebIdentity",
            "Condition":{{"StringEquals":{{"Idp.Example.Com:K":"a"}}}}}}}}"#
    );
    let policy = IamPolicy::parse(&text).unwrap();
    assert!(policy.evaluate(&request(One("a"))).is_allow());
    // Values stay case-sensitive.
    assert!(!policy.evaluate(&request(One("A"))).is_allow());
}

#[test]
fn several_keys_and_operators_are_anded() {
    let text = format!(
        r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow",
            "Principal":{{"Federated":"{PROVIDER}"}},"Action":"sts:AssumeRoleWithWebIdentity",
            "Condition":{{"StringEquals":{{"idp.example.com:a":"1","idp.example.com:b":"2"}},
                          "StringLike":{{"idp.example.com:c":"x*"}}}}}}}}"#
    );
    let policy = IamPolicy::parse(&text).unwrap();
    let req = |a: &str, b: &str, c: &str| {
        WebIdentityRequest::new(PROVIDER, ASSUME_ROLE_WITH_WEB_IDENTITY)
            .with_key("idp.example.com:a", vec![a.to_owned()])
            .with_key("idp.example.com:b", vec![b.to_owned()])
            .with_key("idp.example.com:c", vec![c.to_owned()])
    };
    assert!(policy.evaluate(&req("1", "2", "xy")).is_allow());
    assert!(!policy.evaluate(&req("1", "3", "xy")).is_allow());
    assert!(!policy.evaluate(&req("0", "2", "xy")).is_allow());
    assert!(!policy.evaluate(&req("1", "2", "y")).is_allow());
    // An empty Condition object means no conditions.
    let text = format!(
        r#"{{"Statement":{{"Effect":"Allow","Principal":{{"Federated":"{PROVIDER}"}},
            "Action":"sts:AssumeRoleWithWebIdentity","Condition":{{}}}}}}"#
    );
    assert!(IamPolicy::parse(&text)
        .unwrap()
        .evaluate(&request(Absent))
        .is_allow());
}

/// What a statement-level case expects.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    /// Allowed by the statement at this index.
    Allow(usize),
    /// Explicitly denied by the statement at this index.
    ExplicitDeny(usize),
    /// No Allow applied.
    Implicit,
}

/// One row of the statement table: a `Statement` array (`$P` stands for
/// [`PROVIDER`]) evaluated for `action` with [`KEY`] = `req`.
struct StatementCase {
    name: &'static str,
    statements: &'static str,
    action: &'static str,
    req: Req,
    expect: Expect,
}

const AROLE: &str = "sts:AssumeRoleWithWebIdentity";

const STATEMENT_TABLE: &[StatementCase] = &[
    StatementCase {
        name: "explicit Deny wins over a matching Allow",
        statements: r#"[{"Effect":"Allow","Principal":{"Federated":"$P"},"Action":"sts:AssumeRoleWithWebIdentity"},
                        {"Sid":"NoEvil","Effect":"Deny","Principal":{"Federated":"$P"},"Action":"sts:*",
                         "Condition":{"StringLike":{"idp.example.com:k":"evil*"}}}]"#,
        action: AROLE,
        req: One("evil-repo"),
        expect: Expect::ExplicitDeny(1),
    },
    StatementCase {
        name: "a Deny whose condition fails does not deny",
        statements: r#"[{"Effect":"Allow","Principal":{"Federated":"$P"},"Action":"sts:AssumeRoleWithWebIdentity"},
                        {"Effect":"Deny","Principal":{"Federated":"$P"},"Action":"sts:*",
                         "Condition":{"StringLike":{"idp.example.com:k":"evil*"}}}]"#,
        action: AROLE,
        req: One("good"),
        expect: Expect::Allow(0),
    },
    StatementCase {
        name: "Deny alone is still a deny, never an allow",
        statements: r#"[{"Effect":"Deny","Principal":{"Federated":"$P"},"Action":"sts:*",
                         "Condition":{"StringEquals":{"idp.example.com:k":"x"}}}]"#,
        action: AROLE,
        req: One("y"),
        expect: Expect::Implicit,
    },
    StatementCase {
        name: "Principal names another provider",
        statements: r#"[{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::123456789012:oidc-provider/other.example.com"},
                         "Action":"sts:AssumeRoleWithWebIdentity"}]"#,
        action: AROLE,
        req: Absent,
        expect: Expect::Implicit,
    },
    StatementCase {
        name: "Principal in another account",
        statements: r#"[{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::999999999999:oidc-provider/idp.example.com"},
                         "Action":"sts:AssumeRoleWithWebIdentity"}]"#,
        action: AROLE,
        req: Absent,
        expect: Expect::Implicit,
    },
    StatementCase {
        name: "Principal list containing the provider",
        statements: r#"[{"Effect":"Allow","Principal":{"Federated":["arn:aws:iam::1:oidc-provider/x","$P"]},
                         "Action":"sts:AssumeRoleWithWebIdentity"}]"#,
        action: AROLE,
        req: Absent,
        expect: Expect::Allow(0),
    },
    StatementCase {
        name: "a Service principal never matches web identity",
        statements: r#"[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"},
                        {"Effect":"Allow","Principal":{"Federated":"$P"},"Action":"sts:AssumeRoleWithWebIdentity"}]"#,
        action: AROLE,
        req: Absent,
        expect: Expect::Allow(1),
    },
    StatementCase {
        name: "Principal \"*\" names everyone",
        statements: r#"[{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRoleWithWebIdentity"}]"#,
        action: AROLE,
        req: Absent,
        expect: Expect::Allow(0),
    },
    StatementCase {
        name: "Principal {\"AWS\": \"*\"} names everyone",
        statements: r#"[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRoleWithWebIdentity"}]"#,
        action: AROLE,
        req: Absent,
        expect: Expect::Allow(0),
    },
    StatementCase {
        name: "action wildcard sts:*",
        statements: r#"[{"Effect":"Allow","Principal":{"Federated":"$P"},"Action":"sts:*"}]"#,
        action: AROLE,
        req: Absent,
        expect: Expect::Allow(0),
    },
    StatementCase {
        name: "action wildcard *",
        statements: r#"[{"Effect":"Allow","Principal":{"Federated":"$P"},"Action":"*"}]"#,
        action: AROLE,
        req: Absent,
        expect: Expect::Allow(0),
    },
    StatementCase {
        name: "action prefix wildcard, other case",
        statements: r#"[{"Effect":"Allow","Principal":{"Federated":"$P"},"Action":"STS:assumerolewith*"}]"#,
        action: AROLE,
        req: Absent,
        expect: Expect::Allow(0),
    },
    StatementCase {
        name: "action ? wildcard",
        statements: r#"[{"Effect":"Allow","Principal":{"Federated":"$P"},"Action":"sts:AssumeRoleWithWebIdentit?"}]"#,
        action: AROLE,
        req: Absent,
        expect: Expect::Allow(0),
    },
    StatementCase {
        name: "another action does not match",
        statements: r#"[{"Effect":"Allow","Principal":{"Federated":"$P"},"Action":["sts:AssumeRole","sts:TagSession"]}]"#,
        action: AROLE,
        req: Absent,
        expect: Expect::Implicit,
    },
    StatementCase {
        name: "action list containing it",
        statements: r#"[{"Effect":"Allow","Principal":{"Federated":"$P"},"Action":["sts:TagSession","sts:AssumeRoleWithWebIdentity"]}]"#,
        action: AROLE,
        req: Absent,
        expect: Expect::Allow(0),
    },
    StatementCase {
        name: "NotAction excluding another action applies",
        statements: r#"[{"Effect":"Allow","Principal":{"Federated":"$P"},"NotAction":"sts:AssumeRole"}]"#,
        action: AROLE,
        req: Absent,
        expect: Expect::Allow(0),
    },
    StatementCase {
        name: "NotAction excluding this action does not apply",
        statements: r#"[{"Effect":"Allow","Principal":{"Federated":"$P"},"NotAction":"sts:AssumeRoleWith*"}]"#,
        action: AROLE,
        req: Absent,
        expect: Expect::Implicit,
    },
    StatementCase {
        name: "Deny with NotAction excluding this action does not deny",
        statements: r#"[{"Effect":"Allow","Principal":{"Federated":"$P"},"Action":"sts:AssumeRoleWithWebIdentity"},
                        {"Effect":"Deny","Principal":{"Federated":"$P"},"NotAction":"sts:AssumeRoleWithWebIdentity"}]"#,
        action: AROLE,
        req: Absent,
        expect: Expect::Allow(0),
    },
    StatementCase {
        name: "the request's action matters (AssumeRole against a web-identity policy)",
        statements: r#"[{"Effect":"Allow","Principal":{"Federated":"$P"},"Action":"sts:AssumeRoleWithWebIdentity"}]"#,
        action: "sts:AssumeRole",
        req: Absent,
        expect: Expect::Implicit,
    },
    StatementCase {
        name: "several Allow statements are ORed: the second applies",
        statements: r#"[{"Effect":"Allow","Principal":{"Federated":"$P"},"Action":"sts:AssumeRoleWithWebIdentity",
                          "Condition":{"StringEquals":{"idp.example.com:k":"main"}}},
                        {"Effect":"Allow","Principal":{"Federated":"$P"},"Action":"sts:AssumeRoleWithWebIdentity",
                          "Condition":{"StringEquals":{"idp.example.com:k":"prod"}}}]"#,
        action: AROLE,
        req: One("prod"),
        expect: Expect::Allow(1),
    },
    StatementCase {
        name: "several Allow statements are ORed: none applies",
        statements: r#"[{"Effect":"Allow","Principal":{"Federated":"$P"},"Action":"sts:AssumeRoleWithWebIdentity",
                          "Condition":{"StringEquals":{"idp.example.com:k":"main"}}},
                        {"Effect":"Allow","Principal":{"Federated":"$P"},"Action":"sts:AssumeRoleWithWebIdentity",
                          "Condition":{"StringEquals":{"idp.example.com:k":"prod"}}}]"#,
        action: AROLE,
        req: One("dev"),
        expect: Expect::Implicit,
    },
    StatementCase {
        name: "Null: true in a Deny denies when the key is missing",
        statements: r#"[{"Effect":"Allow","Principal":{"Federated":"$P"},"Action":"sts:AssumeRoleWithWebIdentity"},
                        {"Effect":"Deny","Principal":{"Federated":"$P"},"Action":"sts:AssumeRoleWithWebIdentity",
                          "Condition":{"Null":{"idp.example.com:k":"true"}}}]"#,
        action: AROLE,
        req: Absent,
        expect: Expect::ExplicitDeny(1),
    },
    StatementCase {
        name: "StringNotEquals in a Deny fires on a missing key",
        statements: r#"[{"Effect":"Allow","Principal":{"Federated":"$P"},"Action":"sts:AssumeRoleWithWebIdentity"},
                        {"Effect":"Deny","Principal":{"Federated":"$P"},"Action":"sts:AssumeRoleWithWebIdentity",
                          "Condition":{"StringNotEquals":{"idp.example.com:k":"1234"}}}]"#,
        action: AROLE,
        req: Absent,
        expect: Expect::ExplicitDeny(1),
    },
];

#[test]
fn statement_table() {
    let mut failures = Vec::new();
    for c in STATEMENT_TABLE {
        let text = format!(
            r#"{{"Version":"2012-10-17","Statement":{}}}"#,
            c.statements.replace("$P", PROVIDER)
        );
        let policy = IamPolicy::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let mut req = request(c.req);
        req = WebIdentityRequest::new(req.provider_arn(), c.action).with_key(
            KEY,
            req.key(KEY).map(<[String]>::to_vec).unwrap_or_default(),
        );
        let got = match policy.evaluate(&req) {
            IamDecision::Allow(allow) => Expect::Allow(allow.statement.index),
            IamDecision::Deny(IamDenial {
                cause: DenialCause::ExplicitDeny(s),
                ..
            }) => Expect::ExplicitDeny(s.index),
            IamDecision::Deny(IamDenial {
                cause: DenialCause::NoMatchingAllow,
                ..
            }) => Expect::Implicit,
        };
        if got != c.expect {
            failures.push(format!("{}: expected {:?}, got {got:?}", c.name, c.expect));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn denial_reports_each_statement_and_first_failing_condition() {
    let text = format!(
        r#"{{"Version":"2012-10-17","Statement":[
            {{"Sid":"Main","Effect":"Allow","Principal":{{"Federated":"{PROVIDER}"}},
              "Action":"sts:AssumeRoleWithWebIdentity",
              "Condition":{{"StringEquals":{{"idp.example.com:aud":"sts.amazonaws.com"}},
                            "StringLike":{{"idp.example.com:sub":"repo:org/repo:*"}}}}}},
            {{"Effect":"Allow","Principal":{{"Federated":"arn:aws:iam::1:oidc-provider/x"}},
              "Action":"sts:AssumeRoleWithWebIdentity"}},
            {{"Effect":"Allow","Principal":{{"Federated":"{PROVIDER}"}},"Action":"s3:GetObject"}}]}}"#
    );
    let policy = IamPolicy::parse(&text).unwrap();
    let req = WebIdentityRequest::new(PROVIDER, ASSUME_ROLE_WITH_WEB_IDENTITY)
        .with_key("idp.example.com:aud", vec!["sts.amazonaws.com".to_owned()])
        .with_key(
            "idp.example.com:sub",
            vec!["repo:evil/repo:ref:refs/heads/main\u{202e}".to_owned()],
        );
    let decision = policy.evaluate(&req);
    let denial = decision.denial().unwrap().clone();
    assert_eq!(denial.cause, DenialCause::NoMatchingAllow);
    assert_eq!(denial.outcomes.len(), 3);
    assert_eq!(
        denial.outcomes[0].statement,
        StatementRef {
            index: 0,
            sid: Some("Main".to_owned())
        }
    );
    assert_eq!(
        denial.outcomes[0].mismatch,
        Some(Mismatch::Condition(ConditionFailure {
            operator: "StringLike".to_owned(),
            key: "idp.example.com:sub".to_owned(),
            request_values: Some(vec!["repo:evil/repo:ref:refs/heads/main\u{202e}".to_owned()]),
            policy_values: vec!["repo:org/repo:*".to_owned()],
        }))
    );
    assert!(matches!(
        denial.outcomes[1].mismatch,
        Some(Mismatch::Principal { .. })
    ));
    assert!(matches!(
        denial.outcomes[2].mismatch,
        Some(Mismatch::Action { .. })
    ));
    let line = denial.to_string();
    assert!(
        line.starts_with(
            r#"no Allow statement applies: Statement[0] (Sid "Main") Allow does not apply: StringLike "idp.example.com:sub": request ["repo:evil/repo:ref:refs/heads/main\u{202e}"], policy ["repo:org/repo:*"]; Statement[1] Allow does not apply: Principal does not name"#
        ),
        "{line}"
    );
    assert!(!line.contains('\u{202e}'), "{line}");
    assert!(line.ends_with(r#"Statement[2] Allow does not apply: Action does not cover "sts:AssumeRoleWithWebIdentity""#), "{line}");

    // A missing key is reported as missing.
    let req = WebIdentityRequest::new(PROVIDER, ASSUME_ROLE_WITH_WEB_IDENTITY);
    let decision = policy.evaluate(&req);
    let Some(Mismatch::Condition(f)) = &decision.outcomes()[0].mismatch else {
        panic!("{decision:?}");
    };
    assert_eq!(f.request_values, None);
    assert!(f.to_string().contains("request has no such key"), "{f}");
}

#[test]
fn explicit_deny_names_the_statement_and_long_values_are_cut() {
    let text = format!(
        r#"{{"Statement":[{{"Effect":"Allow","Principal":{{"Federated":"{PROVIDER}"}},"Action":"sts:*"}},
            {{"Sid":"Block","Effect":"Deny","Principal":{{"Federated":"{PROVIDER}"}},"Action":"sts:*"}}]}}"#
    );
    let decision = IamPolicy::parse(&text).unwrap().evaluate(&request(Absent));
    assert!(!decision.is_allow());
    assert_eq!(
        decision.denial().unwrap().to_string(),
        r#"explicit deny by Statement[1] (Sid "Block")"#
    );
    assert!(decision.outcomes().iter().all(|o| o.mismatch.is_none()));

    let failure = ConditionFailure {
        operator: "StringEquals".to_owned(),
        key: "k".to_owned(),
        request_values: Some(vec!["x".repeat(1000)]),
        policy_values: vec!["y".to_owned()],
    };
    let line = failure.to_string();
    assert!(line.len() < 400, "{line}");
    assert!(line.contains("\"…]"), "{line}");
}

fn parse_err(text: &str) -> IamError {
    match IamPolicy::parse(text) {
        Ok(policy) => panic!("parsed: {policy:?}"),
        Err(e) => e,
    }
}

/// A policy whose single statement is `statement_body` plus the matching
/// principal and action unless given.
fn statement(extra: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow","Principal":{{"Federated":"{PROVIDER}"}},
            "Action":"sts:AssumeRoleWithWebIdentity"{extra}}}}}"#
    )
}

fn condition(op: &str, values: &str) -> String {
    statement(&format!(r#","Condition":{{"{op}":{{"{KEY}":{values}}}}}"#))
}

#[test]
fn unknown_operators_are_refused() {
    for op in [
        "StringEqual",
        "stringequals",
        "STRINGEQUALS",
        "NumericEquals",
        "ArnLike",
        "ForSomeValues:StringEquals",
        "forallvalues:StringEquals",
        "StringEqualsIfexists",
        "IfExists",
        "ForAnyValue:",
        "StringLikeIfExistsIfExists",
    ] {
        let e = parse_err(&condition(op, r#""a""#));
        assert!(
            matches!(&e, IamError::UnknownOperator { operator, .. } if operator == op),
            "{op}: {e}"
        );
        assert!(e.to_string().contains("Statement[0].Condition"), "{e}");
    }
}

#[test]
fn null_takes_no_set_prefix_or_if_exists() {
    for op in ["ForAllValues:Null", "ForAnyValue:Null", "NullIfExists"] {
        let e = parse_err(&condition(op, "true"));
        assert!(
            matches!(&e, IamError::BadNullOperator { operator, .. } if operator == op),
            "{op}: {e}"
        );
    }
}

/// Whether a parse error is the expected one.
type ErrorCheck = fn(&IamError) -> bool;

#[test]
fn parse_errors_are_specific() {
    let cases: Vec<(String, ErrorCheck)> = vec![
        // Not JSON, trailing data, duplicate keys at any depth.
        ("not json".to_owned(), |e| matches!(e, IamError::Json(_))),
        (format!("{} {{}}", statement("")), |e| matches!(e, IamError::Json(_))),
        (
            r#"{"Version":"2012-10-17","Version":"2012-10-17","Statement":[]}"#.to_owned(),
            |e| matches!(e, IamError::Json(_)) && e.to_string().contains("duplicate key"),
        ),
        (
            statement(r#","Effect":"Deny""#),
            |e| matches!(e, IamError::Json(_)),
        ),
        (
            statement(&format!(
                r#","Condition":{{"StringEquals":{{"{KEY}":"a","{KEY}":"b"}}}}"#
            )),
            |e| matches!(e, IamError::Json(_)),
        ),
        ("[]".to_owned(), |e| matches!(e, IamError::WrongType { .. })),
        // Top level.
        (
            r#"{"Version":"2012-10-17","Statement":[],"Extra":1}"#.to_owned(),
            |e| matches!(e, IamError::UnknownKey { key, .. } if key == "Extra"),
        ),
        (
            r#"{"Version":"2012-10-17","statement":[]}"#.to_owned(),
            |e| matches!(e, IamError::UnknownKey { key, .. } if key == "statement"),
        ),
        (
            r#"{"Version":"2012-10-17"}"#.to_owned(),
            |e| matches!(e, IamError::MissingKey { key: "Statement", .. }),
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[]}"#.to_owned(),
            |e| matches!(e, IamError::Empty { .. }),
        ),
        (
            r#"{"Version":"2012-10-17","Statement":"x"}"#.to_owned(),
            |e| matches!(e, IamError::WrongType { .. }),
        ),
        (
            r#"{"Version":"2012-10-18","Statement":[]}"#.to_owned(),
            |e| matches!(e, IamError::BadVersion { found } if found == "2012-10-18"),
        ),
        (
            r#"{"Version":20121017,"Statement":[]}"#.to_owned(),
            |e| matches!(e, IamError::WrongType { .. }),
        ),
        // Statement keys.
        (
            statement(r#","Resource":"*""#),
            |e| matches!(e, IamError::ProhibitedKey { key: "Resource", .. }),
        ),
        (
            statement(r#","NotPrincipal":{"AWS":"x"}"#),
            |e| matches!(e, IamError::ProhibitedKey { key: "NotPrincipal", .. }),
        ),
        (
            statement(r#","Conditions":{}"#),
            |e| matches!(e, IamError::UnknownKey { key, .. } if key == "Conditions"),
        ),
        (
            statement(r#","Sid":7"#),
            |e| matches!(e, IamError::WrongType { .. }),
        ),
        // Effect.
        (
            r#"{"Statement":{"Effect":"allow","Principal":"*","Action":"sts:*"}}"#.to_owned(),
            |e| matches!(e, IamError::BadEffect { found, .. } if found == "allow"),
        ),
        (
            r#"{"Statement":{"Effect":"Permit","Principal":"*","Action":"sts:*"}}"#.to_owned(),
            |e| matches!(e, IamError::BadEffect { .. }),
        ),
        (
            r#"{"Statement":{"Effect":true,"Principal":"*","Action":"sts:*"}}"#.to_owned(),
            |e| matches!(e, IamError::WrongType { .. }),
        ),
        (
            r#"{"Statement":{"Principal":"*","Action":"sts:*"}}"#.to_owned(),
            |e| matches!(e, IamError::MissingKey { key: "Effect", .. }),
        ),
        // Principal.
        (
            r#"{"Statement":{"Effect":"Allow","Action":"sts:*"}}"#.to_owned(),
            |e| matches!(e, IamError::MissingKey { key: "Principal", .. }),
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":"arn:aws:iam::1:root","Action":"sts:*"}}"#
                .to_owned(),
            |e| matches!(e, IamError::BadPrincipal { .. }),
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":{"OIDC":"x"},"Action":"sts:*"}}"#.to_owned(),
            |e| matches!(e, IamError::UnknownPrincipalType { key, .. } if key == "OIDC"),
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":{},"Action":"sts:*"}}"#.to_owned(),
            |e| matches!(e, IamError::Empty { .. }),
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":{"Federated":[]},"Action":"sts:*"}}"#
                .to_owned(),
            |e| matches!(e, IamError::Empty { .. }),
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::1:oidc-provider/*"},"Action":"sts:*"}}"#
                .to_owned(),
            |e| matches!(e, IamError::FederatedWildcard { .. }),
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":{"Federated":1},"Action":"sts:*"}}"#.to_owned(),
            |e| matches!(e, IamError::WrongType { .. }),
        ),
        // Action.
        (
            r#"{"Statement":{"Effect":"Allow","Principal":"*"}}"#.to_owned(),
            |e| matches!(e, IamError::MissingKey { key: "Action", .. }),
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"sts:*","NotAction":"s3:*"}}"#
                .to_owned(),
            |e| matches!(e, IamError::ActionAndNotAction { .. }),
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"AssumeRoleWithWebIdentity"}}"#
                .to_owned(),
            |e| matches!(e, IamError::BadAction { .. }),
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"sts:"}}"#.to_owned(),
            |e| matches!(e, IamError::BadAction { .. }),
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":[]}}"#.to_owned(),
            |e| matches!(e, IamError::Empty { .. }),
        ),
        // Conditions.
        (
            statement(r#","Condition":[]"#),
            |e| matches!(e, IamError::WrongType { .. }),
        ),
        (
            statement(r#","Condition":{"StringEquals":{}}"#),
            |e| matches!(e, IamError::Empty { .. }),
        ),
        (
            statement(r#","Condition":{"StringEquals":"a"}"#),
            |e| matches!(e, IamError::WrongType { .. }),
        ),
        (condition("StringEquals", "[]"), |e| {
            matches!(e, IamError::Empty { .. })
        }),
        (condition("StringEquals", "null"), |e| {
            matches!(e, IamError::BadConditionValue { found: "null", .. })
        }),
        (condition("StringEquals", r#"{"a":1}"#), |e| {
            matches!(e, IamError::BadConditionValue { .. })
        }),
        (condition("StringEquals", r#"[["a"]]"#), |e| {
            matches!(e, IamError::BadConditionValue { .. })
        }),
        (condition("Bool", r#""yes""#), |e| {
            matches!(e, IamError::NotBoolean { value, .. } if value == "yes")
        }),
        (condition("Null", "1"), |e| {
            matches!(e, IamError::NotBoolean { .. })
        }),
        (condition("StringLike", r#""repo:${aws:username}""#), |e| {
            matches!(e, IamError::PolicyVariable { .. })
        }),
        (condition("StringLike", r#""a\u0000*""#), |e| {
            matches!(e, IamError::PatternControlChar { offset: 1, ch: '\0', .. })
        }),
        (
            statement(r#","Condition":{"StringEquals":{"":"a"}}"#),
            |e| matches!(e, IamError::Empty { .. }),
        ),
    ];
    for (text, check) in cases {
        match IamPolicy::parse(&text) {
            Ok(p) => panic!("parsed {text}: {p:?}"),
            Err(e) => assert!(check(&e), "{text}: wrong error {e:?} ({e})"),
        }
    }
}

#[test]
fn parse_error_messages_name_the_place() {
    let e = parse_err(
        r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"sts:*"},
            {"Sid":"Second","Effect":"Allow","Principal":"*","Action":"sts:*",
             "Condition":{"ForAllValues:Null":{"k":"true"}}}]}"#,
    );
    assert_eq!(
        e.to_string(),
        r#"Statement[1] (Sid "Second").Condition operator "ForAllValues:Null" is not valid: Null already tests whether a key exists, so it takes no ForAnyValue:/ForAllValues: prefix and no IfExists suffix; write "Null""#
    );
    let e = parse_err(&condition("Bool", r#""yes""#));
    assert_eq!(
        e.to_string(),
        r#"Statement[0].Condition.Bool["idp.example.com:k"] value "yes" is not a boolean; write true or false"#
    );
    let e = parse_err(
        r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"sts:*","Resource":"*"}}"#,
    );
    assert_eq!(
        e.to_string(),
        r#"Statement[0] has "Resource", which a role trust policy must not have: the role itself is the resource; remove it"#
    );
}

#[test]
fn parse_accepts_what_iam_accepts() {
    // A single statement object, no Version (AWS applies 2008-10-17), Id.
    let p = IamPolicy::parse(
        r#"{"Id":"trust","Statement":{"Effect":"Allow","Principal":"*","Action":"sts:*"}}"#,
    )
    .unwrap();
    assert_eq!(p.version(), None);
    assert_eq!(p.id(), Some("trust"));
    assert_eq!(p.statements().len(), 1);
    assert_eq!(p.statements()[0].principal(), &Principal::Everyone);
    // Under 2008-10-17, `${` is literal text.
    let p = IamPolicy::parse(&format!(
        r#"{{"Version":"2008-10-17","Statement":{{"Effect":"Allow","Principal":{{"Federated":"{PROVIDER}"}},
            "Action":"sts:AssumeRoleWithWebIdentity","Condition":{{"StringEquals":{{"{KEY}":"${{x}}"}}}}}}}}"#
    ))
    .unwrap();
    assert_eq!(p.version(), Some(PolicyVersion::V2008));
    assert!(p.evaluate(&request(One("${x}"))).is_allow());
    // Numbers, booleans and mixed arrays become text; the operator parses.
    let p = IamPolicy::parse(&condition(
        "ForAllValues:StringEqualsIgnoreCaseIfExists",
        r#"[1, true, "x"]"#,
    ))
    .unwrap();
    let c = &p.statements()[0].conditions()[0];
    assert_eq!(c.values(), ["1", "true", "x"]);
    assert_eq!(c.key(), KEY);
    assert_eq!(
        c.operator_text(),
        "ForAllValues:StringEqualsIgnoreCaseIfExists"
    );
    assert_eq!(
        c.operator(),
        ConditionOperator {
            set: Some(SetQualifier::ForAllValues),
            kind: OperatorKind::StringEqualsIgnoreCase,
            if_exists: true,
        }
    );
    // Principal types are recorded for linting.
    let p = IamPolicy::parse(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow",
            "Principal":{"AWS":["*"],"Service":"ec2.amazonaws.com"},"NotAction":"s3:*"}}"#,
    )
    .unwrap();
    let s = &p.statements()[0];
    assert!(s.action().is_not_action());
    assert_eq!(s.action().patterns().collect::<Vec<_>>(), ["s3:*"]);
    assert_eq!(
        s.principal(),
        &Principal::Listed(vec![
            PrincipalId {
                kind: PrincipalKind::Aws,
                value: "*".to_owned()
            },
            PrincipalId {
                kind: PrincipalKind::Service,
                value: "ec2.amazonaws.com".to_owned()
            },
        ])
    );
}

const GITHUB_ARN: &str =
    "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com";

/// The typical GitHub trust policy from `aws-sts-and-iam.md`.
fn github_policy() -> IamPolicy {
    IamPolicy::parse(&format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow",
 "Principal":{{"Federated":"{GITHUB_ARN}"}},
 "Action":"sts:AssumeRoleWithWebIdentity",
 "Condition":{{"StringEquals":{{"token.actions.githubusercontent.com:aud":"sts.amazonaws.com"}},
              "StringLike":{{"token.actions.githubusercontent.com:sub":"repo:org/repo:*"}}}}}}]}}"#
    ))
    .unwrap()
}

fn github_claims(overrides: Value) -> Map<String, Value> {
    let mut claims = json!({
        "iss": "https://token.actions.githubusercontent.com",
        "aud": "sts.amazonaws.com",
        "sub": "repo:org/repo:ref:refs/heads/main",
        "ref": "refs/heads/main",
        "repository": "org/repo",
        "repository_id": "123456",
        "repository_owner": "org",
        "repository_owner_id": "7890",
        "actor": "octocat",
        "actor_id": "42",
        "workflow": "deploy",
        "job_workflow_ref": "org/repo/.github/workflows/deploy.yml@refs/heads/main",
        "event_name": "push",
        "runner_environment": "github-hosted",
        "exp": 1_700_000_600,
        "iat": 1_700_000_000,
    });
    if let (Value::Object(base), Value::Object(extra)) = (&mut claims, overrides) {
        for (k, v) in extra {
            if v.is_null() {
                base.remove(&k);
            } else {
                base.insert(k, v);
            }
        }
    }
    match claims {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

fn github_request(overrides: Value) -> WebIdentityRequest {
    WebIdentityRequest::from_claims(GITHUB_ACTIONS_PROVIDER, ACCOUNT, &github_claims(overrides))
}

#[test]
fn github_policy_allows_the_repository() {
    let policy = github_policy();
    let decision = policy.evaluate(&github_request(json!({})));
    let IamDecision::Allow(allow) = &decision else {
        panic!("{decision:?}");
    };
    assert_eq!(allow.statement.index, 0);
    // Any ref, pull request or environment of the repository: `repo:org/repo:*`.
    for sub in [
        "repo:org/repo:pull_request",
        "repo:org/repo:environment:prod",
        "repo:org/repo:ref:refs/tags/v1",
    ] {
        assert!(
            policy
                .evaluate(&github_request(json!({ "sub": sub })))
                .is_allow(),
            "{sub}"
        );
    }
    // An aud array containing the audience (multi-valued key, no set prefix).
    assert!(policy
        .evaluate(&github_request(
            json!({"aud": ["other", "sts.amazonaws.com"]})
        ))
        .is_allow());
}

#[test]
fn github_policy_denies_other_tokens() {
    let policy = github_policy();
    for (overrides, operator, key) in [
        (
            json!({"sub": "repo:org/repo2:ref:refs/heads/main"}),
            "StringLike",
            "sub",
        ),
        (
            json!({"sub": "repo:evil/repo:ref:refs/heads/main"}),
            "StringLike",
            "sub",
        ),
        (json!({"sub": "repo:org/repo"}), "StringLike", "sub"),
        (
            json!({"sub": "REPO:org/repo:ref:refs/heads/main"}),
            "StringLike",
            "sub",
        ),
        (json!({"sub": null}), "StringLike", "sub"),
        (json!({"aud": "tokenmint"}), "StringEquals", "aud"),
        (json!({"aud": ["a", "b"]}), "StringEquals", "aud"),
        (json!({"aud": "STS.amazonaws.com"}), "StringEquals", "aud"),
        (json!({"aud": null}), "StringEquals", "aud"),
    ] {
        let decision = policy.evaluate(&github_request(overrides.clone()));
        let Some(denial) = decision.denial() else {
            panic!("{overrides}: allowed");
        };
        assert_eq!(denial.cause, DenialCause::NoMatchingAllow, "{overrides}");
        let Some(Mismatch::Condition(f)) = &denial.outcomes[0].mismatch else {
            panic!("{overrides}: {denial:?}");
        };
        assert_eq!(f.operator, operator, "{overrides}");
        assert_eq!(
            f.key,
            format!("token.actions.githubusercontent.com:{key}"),
            "{overrides}"
        );
    }
    // Another provider, even with the same claims.
    let other = WebIdentityRequest::from_claims(
        "token.actions.githubusercontent.com/acme",
        ACCOUNT,
        &github_claims(json!({})),
    );
    assert!(matches!(
        policy.evaluate(&other).outcomes()[0].mismatch,
        Some(Mismatch::Principal { .. })
    ));
    // Another account's provider.
    let other = WebIdentityRequest::from_claims(
        GITHUB_ACTIONS_PROVIDER,
        "999999999999",
        &github_claims(json!({})),
    );
    assert!(!policy.evaluate(&other).is_allow());
}

#[test]
fn github_per_claim_keys_bind_ids() {
    let policy = IamPolicy::parse(&format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"GitHubDeploy","Effect":"Allow",
 "Principal":{{"Federated":"{GITHUB_ARN}"}},
 "Action":"sts:AssumeRoleWithWebIdentity",
 "Condition":{{"StringEquals":{{"token.actions.githubusercontent.com:aud":"sts.amazonaws.com",
                                "token.actions.githubusercontent.com:repository_id":"123456",
                                "token.actions.githubusercontent.com:ref":"refs/heads/main"}},
              "StringLike":{{"token.actions.githubusercontent.com:job_workflow_ref":
                              "org/repo/.github/workflows/*@refs/heads/main"}}}}}},
 {{"Sid":"NoPullRequests","Effect":"Deny","Principal":{{"Federated":"{GITHUB_ARN}"}},
  "Action":"sts:AssumeRoleWithWebIdentity",
  "Condition":{{"StringLike":{{"token.actions.githubusercontent.com:sub":"*:pull_request"}}}}}}]}}"#
    ))
    .unwrap();
    assert!(policy.evaluate(&github_request(json!({}))).is_allow());
    // A re-created repository with the same name has a new id.
    assert!(!policy
        .evaluate(&github_request(json!({"repository_id": "999"})))
        .is_allow());
    assert!(!policy
        .evaluate(&github_request(json!({"ref": "refs/heads/dev"})))
        .is_allow());
    assert!(!policy
        .evaluate(&github_request(json!({"repository_id": null})))
        .is_allow());
    let decision = policy.evaluate(&github_request(
        json!({"sub": "repo:org/repo:pull_request"}),
    ));
    assert_eq!(
        decision.denial().map(ToString::to_string).as_deref(),
        Some(r#"explicit deny by Statement[1] (Sid "NoPullRequests")"#)
    );
    // The keys are case-insensitive in the policy.
    let upper = IamPolicy::parse(&format!(
        r#"{{"Statement":{{"Effect":"Allow","Principal":{{"Federated":"{GITHUB_ARN}"}},
 "Action":"sts:AssumeRoleWithWebIdentity",
 "Condition":{{"StringEquals":{{"Token.Actions.GitHubUserContent.com:Repository_ID":"123456"}}}}}}}}"#
    ))
    .unwrap();
    assert!(upper.evaluate(&github_request(json!({}))).is_allow());
}

#[test]
fn from_claims_builds_exactly_the_sts_keys() {
    let claims = github_claims(json!({
        "aud": ["sts.amazonaws.com", "tokenmint"],
        "amr": ["pwd", "mfa"],
        "environment": "prod",
        "enterprise_id": 77,
    }));
    let req = WebIdentityRequest::from_claims(GITHUB_ACTIONS_PROVIDER, ACCOUNT, &claims);
    assert_eq!(req.provider_arn(), GITHUB_ARN);
    assert_eq!(req.action(), "sts:AssumeRoleWithWebIdentity");
    let keys: Vec<(&str, Vec<&str>)> = req
        .keys()
        .map(|(k, vs)| (k, vs.iter().map(String::as_str).collect()))
        .collect();
    let p = |claim: &str| format!("token.actions.githubusercontent.com:{claim}");
    let expected: Vec<(String, Vec<&str>)> = vec![
        (p("actor"), vec!["octocat"]),
        (p("actor_id"), vec!["42"]),
        (p("amr"), vec!["pwd", "mfa"]),
        (p("aud"), vec!["sts.amazonaws.com", "tokenmint"]),
        (p("enterprise_id"), vec!["77"]),
        (p("environment"), vec!["prod"]),
        (
            p("job_workflow_ref"),
            vec!["org/repo/.github/workflows/deploy.yml@refs/heads/main"],
        ),
        (p("ref"), vec!["refs/heads/main"]),
        (p("repository"), vec!["org/repo"]),
        (p("repository_id"), vec!["123456"]),
        (p("sub"), vec!["repo:org/repo:ref:refs/heads/main"]),
        (p("workflow"), vec!["deploy"]),
    ];
    let expected: Vec<(&str, Vec<&str>)> = expected
        .iter()
        .map(|(k, vs)| (k.as_str(), vs.clone()))
        .collect();
    assert_eq!(keys, expected);
    // Not STS keys: repository_owner_id, event_name, runner_environment, iss.
    assert_eq!(req.key(&p("repository_owner_id")), None);
    assert_eq!(req.key(&p("event_name")), None);
    // Lookup is case-insensitive.
    assert!(req.key("TOKEN.actions.githubusercontent.com:SUB").is_some());

    // Another issuer gets only aud, sub and amr; null, objects and empty
    // arrays give no key.
    let claims = json!({"aud": "client", "sub": "s", "amr": [], "repository": "org/repo"});
    let Value::Object(claims) = claims else {
        unreachable!()
    };
    let req = WebIdentityRequest::from_claims("gitlab.example.com", ACCOUNT, &claims);
    assert_eq!(
        req.provider_arn(),
        "arn:aws:iam::123456789012:oidc-provider/gitlab.example.com"
    );
    let names: Vec<&str> = req.keys().map(|(k, _)| k).collect();
    assert_eq!(names, ["gitlab.example.com:aud", "gitlab.example.com:sub"]);
}

#[test]
fn amr_is_multi_valued_for_set_operators() {
    let amr_policy = |op: &str| {
        IamPolicy::parse(&format!(
            r#"{{"Statement":{{"Effect":"Allow","Principal":{{"Federated":"{GITHUB_ARN}"}},
            "Action":"sts:AssumeRoleWithWebIdentity",
            "Condition":{{"{op}":{{"token.actions.githubusercontent.com:amr":"mfa"}}}}}}}}"#
        ))
        .unwrap()
    };
    let with_amr = github_request(json!({"amr": ["pwd", "mfa"]}));
    let without = github_request(json!({}));
    assert!(amr_policy("ForAnyValue:StringEquals")
        .evaluate(&with_amr)
        .is_allow());
    assert!(!amr_policy("ForAllValues:StringEquals")
        .evaluate(&with_amr)
        .is_allow());
    // The ForAllValues trap: an absent set allows.
    assert!(amr_policy("ForAllValues:StringEquals")
        .evaluate(&without)
        .is_allow());
    assert!(!amr_policy("ForAnyValue:StringEquals")
        .evaluate(&without)
        .is_allow());
}

#[test]
fn decision_has_no_allow_by_default() {
    // The only way to get Allow is an applicable Allow statement.
    let text = format!(
        r#"{{"Statement":{{"Effect":"Deny","Principal":{{"Federated":"{PROVIDER}"}},"Action":"sts:*",
            "Condition":{{"StringEquals":{{"{KEY}":"x"}}}}}}}}"#
    );
    let decision = IamPolicy::parse(&text).unwrap().evaluate(&request(Absent));
    assert!(!decision.is_allow());
    assert_eq!(
        decision.denial().map(|d| d.cause.clone()),
        Some(DenialCause::NoMatchingAllow)
    );
    assert_eq!(
        decision.denial().unwrap().to_string(),
        "no Allow statement applies"
    );
}
