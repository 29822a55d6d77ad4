//! Fuzz `[broker.claims]` compilation and evaluation, plus a differential test of `like` globs against an equivalent regex.
//!
//! 1. A claims table built from the input is compiled; when it compiles,
//!    every condition is evaluated against fuzzed claims through
//!    `TrustPolicy::explain`, and each outcome must agree with the
//!    condition's own `is_satisfied_by` on the claim's text.
//! 2. A `like` pattern is compiled through the policy compiler and
//!    compared, on fuzzed texts, with the regex `^(?:…)$` obtained by
//!    escaping every character and turning `*` into `.*` and `?` into `.`
//!    (both matching any character, newlines included).

#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use tokenmint::oidc::claim_text;
use tokenmint::policy::TrustPolicy;

#[derive(Arbitrary, Debug)]
enum Operand {
    One(String),
    Many(Vec<String>),
    Int(i64),
    Bool(bool),
    Empty,
}

#[derive(Arbitrary, Debug)]
enum Cond {
    Exact(Operand),
    Like(Operand),
    Matches(Operand),
    /// An inline table with any operator name (usually refused).
    Other(String, Operand),
    /// Two operators at once (always refused).
    Both(Operand, Operand),
}

#[derive(Arbitrary, Debug)]
enum Claim {
    Str(String),
    Int(i64),
    Uint(u64),
    Float(f64),
    Bool(bool),
    Null,
    Arr(Vec<String>),
    Obj,
}

#[derive(Arbitrary, Debug)]
struct Input {
    conditions: Vec<(String, Cond)>,
    claims: Vec<(String, Claim)>,
    glob: String,
    texts: Vec<String>,
}

fn operand(o: Operand) -> toml::Value {
    match o {
        Operand::One(s) => toml::Value::String(s),
        Operand::Many(v) => toml::Value::Array(v.into_iter().map(toml::Value::String).collect()),
        Operand::Int(i) => toml::Value::Integer(i),
        Operand::Bool(b) => toml::Value::Boolean(b),
        Operand::Empty => toml::Value::Array(Vec::new()),
    }
}

fn inline(pairs: Vec<(&str, toml::Value)>) -> toml::Value {
    toml::Value::Table(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn claim(c: Claim) -> Value {
    match c {
        Claim::Str(s) => Value::String(s),
        Claim::Int(i) => Value::from(i),
        Claim::Uint(u) => Value::from(u),
        Claim::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        Claim::Bool(b) => Value::Bool(b),
        Claim::Null => Value::Null,
        Claim::Arr(v) => Value::Array(v.into_iter().map(Value::String).collect()),
        Claim::Obj => Value::Object(Map::new()),
    }
}

fn glob_to_regex(glob: &str) -> String {
    let mut out = String::from("^(?:");
    for ch in glob.chars() {
        match ch {
            '*' => out.push_str("(?s:.*)"),
            '?' => out.push_str("(?s:.)"),
            c => out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    out.push_str(")$");
    out
}

fuzz_target!(|input: Input| {
    // 1. Compile and evaluate.
    let mut table = toml::Table::new();
    for (name, cond) in input.conditions {
        let value = match cond {
            Cond::Exact(o) => operand(o),
            Cond::Like(o) => inline(vec![("like", operand(o))]),
            Cond::Matches(o) => inline(vec![("matches", operand(o))]),
            Cond::Other(op, o) => inline(vec![(op.as_str(), operand(o))]),
            Cond::Both(a, b) => inline(vec![("like", operand(a)), ("matches", operand(b))]),
        };
        table.insert(name, value);
    }
    let claims: Map<String, Value> = input
        .claims
        .into_iter()
        .map(|(k, v)| (k, claim(v)))
        .collect();
    if let Ok(policy) = TrustPolicy::compile(&table) {
        let outcomes = policy.explain(&claims);
        let conditions: Vec<_> = policy.conditions().collect();
        assert!(
            !conditions.is_empty(),
            "a compiled policy has no conditions"
        );
        assert_eq!(outcomes.len(), conditions.len());
        for (outcome, (name, condition)) in outcomes.iter().zip(&conditions) {
            assert_eq!(outcome.claim, *name);
            let text = claims.get(*name).and_then(claim_text);
            let expected = text
                .as_deref()
                .is_some_and(|t| condition.is_satisfied_by(t));
            assert_eq!(outcome.passed, expected, "{outcome}");
            assert!(!outcome.passed || outcome.actual.is_some());
            // The rendering escapes whatever the token said.
            let shown = outcome.to_string();
            assert!(!shown.chars().any(char::is_control), "{shown:?}");
        }
    }

    // 2. Glob against regex.
    let mut like = toml::Table::new();
    like.insert(
        "x".to_owned(),
        inline(vec![("like", toml::Value::String(input.glob.clone()))]),
    );
    let Ok(policy) = TrustPolicy::compile(&like) else {
        assert!(
            input.glob.is_empty() || input.glob.chars().any(char::is_control),
            "glob {:?} refused",
            input.glob
        );
        return;
    };
    let Some((_, condition)) = policy.conditions().next() else {
        panic!("a compiled policy has no conditions");
    };
    let Ok(reference) = regex::RegexBuilder::new(&glob_to_regex(&input.glob))
        .size_limit(1 << 24)
        .build()
    else {
        return;
    };
    for text in &input.texts {
        assert_eq!(
            condition.is_satisfied_by(text),
            reference.is_match(text),
            "glob {:?} on {text:?}",
            input.glob
        );
    }
});
