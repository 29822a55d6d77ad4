//! Lint tests: a positive and a negative case for every rule, pattern analysis, line numbers, and the SARIF structure.

use super::model::{crosses_owner, Kind};
use super::*;
use std::collections::BTreeSet;

/// A broker that trips no rule.
const CLEAN_CLAIMS: &str = r#"repository_id = "1"
repository_owner_id = "2"
sub = "repo:acme/app:ref:refs/heads/main"
runner_environment = "github-hosted"
"#;

fn broker(name: &str, permissions: &str, claims: &str) -> String {
    format!(
        "[[broker]]\nname = \"{name}\"\nissuer = \"gh\"\nrepository = \"acme/app\"\npermissions = {{ {permissions} }}\n[broker.claims]\n{claims}\n"
    )
}

fn config(brokers: &[String]) -> String {
    format!(
        "[github]\napp_id = \"1\"\nprivate_key_file = \"none.pem\"\n\n[[issuer]]\nname = \"gh\"\nurl = \"https://token.actions.githubusercontent.com\"\naudiences = [\"tokenmint\"]\n\n{}",
        brokers.join("\n")
    )
}

fn lint_one(permissions: &str, claims: &str) -> Report {
    lint_config_text(
        &config(&[broker("b", permissions, claims)]),
        Path::new("tokenmint.toml"),
    )
    .unwrap()
}

fn ids(report: &Report) -> BTreeSet<&'static str> {
    report.findings.iter().map(|f| f.rule_id).collect()
}

fn has(report: &Report, id: &str) -> bool {
    report.findings.iter().any(|f| f.rule_id == id)
}

/// `CLEAN_CLAIMS` with `line`'s claim replaced (or added).
fn clean_with(line: &str) -> String {
    let key = line.split('=').next().unwrap().trim();
    let mut out: Vec<&str> = CLEAN_CLAIMS
        .lines()
        .filter(|l| l.split('=').next().unwrap().trim() != key)
        .collect();
    out.push(line);
    out.join("\n")
}

/// `CLEAN_CLAIMS` without the listed claims.
fn clean_without(claims: &[&str]) -> String {
    CLEAN_CLAIMS
        .lines()
        .filter(|l| !claims.contains(&l.split('=').next().unwrap().trim()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_tight_policy_has_no_findings() {
    let r = lint_one(r#"contents = "read""#, CLEAN_CLAIMS);
    assert!(r.findings.is_empty(), "{r}");
    assert!(!r.fails(Severity::Info));
    assert!(r.to_string().contains("no findings"));
}

#[test]
fn rule_ids_are_unique_documented_and_well_formed() {
    let mut seen = BTreeSet::new();
    let readme = include_str!("../../../../README.md");
    for r in RULES {
        assert!(seen.insert(r.id), "duplicate {}", r.id);
        assert!(r.id.starts_with("TM") && r.id.len() == 5, "{}", r.id);
        let applies = match r.applies {
            Applies::Config => "config",
            Applies::Iam => "IAM",
            Applies::Both => "both",
        };
        let row = format!("| `{}` | {} | {applies} |", r.id, r.severity);
        assert!(
            readme.contains(&row),
            "README's rule table lacks the row {row:?}"
        );
        assert!(!r.summary.is_empty() && !r.description.is_empty() && !r.fix.is_empty());
    }
}

// ------------------------------------------------------------------ TM001

#[test]
fn tm001_owner_crossing_patterns() {
    let prefix = "repo:";
    for (kind, p) in [
        (Kind::Like, "repo:*"),
        (Kind::Like, "repo:acme*"),
        (Kind::Like, "repo:acme?/app:*"),
        (Kind::Like, "*"),
        (Kind::Like, "*:ref:refs/heads/main"),
        (Kind::Regex, ".*"),
        (Kind::Regex, "^.*:ref:refs/heads/main"),
        (Kind::Regex, "repo:[^/]*/app:.*"),
        (Kind::Regex, r"repo:\w+/app:.*"),
        (Kind::Regex, "repo:acme.*"),
        (Kind::Regex, "repo:acme/app:ref:refs/heads/main|.*"),
        (Kind::Regex, "(?:.*)/app"),
    ] {
        assert!(crosses_owner(kind, p, prefix), "{kind:?} {p:?} must cross");
    }
    for (kind, p) in [
        (Kind::Exact, "*"),
        (Kind::Like, "repo:acme/*"),
        (Kind::Like, "repo:acme/app:*"),
        (Kind::Like, "repo:acme"),
        (Kind::Like, "project_path:*"),
        (Kind::Regex, "repo:acme/(app|web):.*"),
        (Kind::Regex, r"repo:acme\-x/app:.*"),
        (Kind::Regex, "(repo:acme/a|repo:acme/b):ref:refs/heads/main"),
    ] {
        assert!(
            !crosses_owner(kind, p, prefix),
            "{kind:?} {p:?} must not cross"
        );
    }
    assert!(crosses_owner(Kind::Like, "acme*/app", ""));
    assert!(!crosses_owner(Kind::Like, "acme/*", ""));
}

#[test]
fn tm001_flags_a_crossing_sub_unless_the_owner_is_pinned() {
    let claims = r#"sub = { like = "repo:acme*" }"#;
    let r = lint_one(r#"contents = "read""#, claims);
    assert!(has(&r, "TM001"), "{r}");
    let f = r.findings.iter().find(|f| f.rule_id == "TM001").unwrap();
    assert_eq!(f.severity, Severity::High);
    assert_eq!(
        f.location,
        Location::Broker {
            broker: "b".into(),
            claim: Some("sub".into())
        }
    );
    let r = lint_one(
        r#"contents = "read""#,
        &format!("{claims}\nrepository_owner_id = \"2\""),
    );
    assert!(!has(&r, "TM001"), "{r}");
    let r = lint_one(
        r#"contents = "read""#,
        r#"sub = { like = "repo:acme/app:*" }"#,
    );
    assert!(!has(&r, "TM001"), "{r}");
}

// ------------------------------------------------------------------ TM002

#[test]
fn tm002_no_repository_binding() {
    let r = lint_one(
        r#"contents = "read""#,
        "repository_owner_id = \"2\"\nref = \"refs/heads/main\"",
    );
    assert!(has(&r, "TM002"), "{r}");
    let r = lint_one(r#"contents = "read""#, "repository_id = \"1\"");
    assert!(!has(&r, "TM002"), "{r}");
    let r = lint_one(r#"contents = "read""#, "project_id = \"7\"");
    assert!(!has(&r, "TM002"), "GitLab's project_id binds: {r}");
}

// ------------------------------------------------------------------ TM003

#[test]
fn tm003_names_without_ids() {
    let r = lint_one(
        r#"contents = "read""#,
        "repository = \"acme/app\"\nrunner_environment = \"github-hosted\"",
    );
    assert!(has(&r, "TM003"), "{r}");
    let r = lint_one(
        r#"contents = "read""#,
        &clean_without(&["repository_id", "repository_owner_id"]),
    );
    assert!(has(&r, "TM003"), "sub names the repository: {r}");
    let r = lint_one(
        r#"contents = "read""#,
        "sub = \"repo:acme@2/app@1:ref:refs/heads/main\"",
    );
    assert!(!has(&r, "TM003"), "the immutable sub form carries IDs: {r}");
    let r = lint_one(
        r#"contents = "read""#,
        &clean_with("repository = \"acme/app\""),
    );
    assert!(!has(&r, "TM003"), "{r}");
}

// ------------------------------------------------------------------ TM004

#[test]
fn tm004_write_reachable_from_pull_request() {
    for sub in [
        r#"sub = { like = "repo:acme/app:*" }"#,
        r#"sub = { like = "repo:acme/*" }"#,
        r#"sub = { matches = "repo:acme/app:.*" }"#,
        r#"sub = { matches = "repo:acme/[^:]+:pull_request" }"#,
        r#"sub = ["repo:acme/app:ref:refs/heads/main", "repo:acme/app:pull_request"]"#,
    ] {
        let r = lint_one(r#"contents = "write""#, &clean_with(sub));
        assert!(has(&r, "TM004"), "{sub}: {r}");
    }
    let open = clean_with(r#"sub = { like = "repo:acme/app:*" }"#);
    let r = lint_one(r#"contents = "write""#, &open);
    let f = r.findings.iter().find(|f| f.rule_id == "TM004").unwrap();
    assert!(
        f.message
            .contains(r#"such as "repo:acme/app:pull_request""#),
        "{}",
        f.message
    );
    let r = lint_one(r#"contents = "read""#, &open);
    assert!(!has(&r, "TM004"), "read-only: {r}");
    let r = lint_one(
        r#"contents = "write""#,
        &format!("{open}\nevent_name = \"push\""),
    );
    assert!(!has(&r, "TM004"), "event_name excludes pull_request: {r}");
    let r = lint_one(r#"contents = "write""#, CLEAN_CLAIMS);
    assert!(!has(&r, "TM004"), "main only: {r}");
}

// ------------------------------------------------------------------ TM005

#[test]
fn tm005_environment_binding_is_informational() {
    let r = lint_one(
        r#"contents = "read""#,
        &clean_with("environment = \"prod\""),
    );
    let f = r.findings.iter().find(|f| f.rule_id == "TM005").unwrap();
    assert_eq!(f.severity, Severity::Info);
    let r = lint_one(
        r#"contents = "read""#,
        &clean_with("sub = \"repo:acme/app:environment:prod\""),
    );
    assert!(has(&r, "TM005"), "{r}");
    assert!(!has(
        &lint_one(r#"contents = "read""#, CLEAN_CLAIMS),
        "TM005"
    ));
}

// ------------------------------------------------------------------ TM006

#[test]
fn tm006_runner_environment_not_pinned() {
    let r = lint_one(
        r#"contents = "read""#,
        &clean_without(&["runner_environment"]),
    );
    assert!(has(&r, "TM006"), "{r}");
    let r = lint_one(
        r#"contents = "read""#,
        &clean_with(r#"runner_environment = ["github-hosted", "self-hosted"]"#),
    );
    assert!(has(&r, "TM006"), "{r}");
    assert!(!has(
        &lint_one(r#"contents = "read""#, CLEAN_CLAIMS),
        "TM006"
    ));
}

// ------------------------------------------------------------------ TM007

#[test]
fn tm007_same_claims_different_permissions() {
    let text = config(&[
        broker("read", r#"contents = "read""#, CLEAN_CLAIMS),
        broker("write", r#"contents = "write""#, CLEAN_CLAIMS),
    ]);
    let r = lint_config_text(&text, Path::new("t.toml")).unwrap();
    let f = r.findings.iter().find(|f| f.rule_id == "TM007").unwrap();
    assert!(f.message.contains("\"read\""), "{}", f.message);
    assert_eq!(
        f.location,
        Location::Broker {
            broker: "write".into(),
            claim: None
        }
    );
    let text = config(&[
        broker("a", r#"contents = "read""#, CLEAN_CLAIMS),
        broker("b", r#"contents = "read""#, CLEAN_CLAIMS),
        broker(
            "c",
            r#"contents = "write""#,
            &clean_with("environment = \"prod\""),
        ),
    ]);
    let r = lint_config_text(&text, Path::new("t.toml")).unwrap();
    assert!(!has(&r, "TM007"), "{r}");
}

// ------------------------------------------------------------------ TM008

#[test]
fn tm008_like_without_wildcard() {
    let r = lint_one(
        r#"contents = "read""#,
        &clean_with(r#"ref = { like = "refs/heads/main" }"#),
    );
    let f = r.findings.iter().find(|f| f.rule_id == "TM008").unwrap();
    assert!(f.fix.contains(r#"ref = "refs/heads/main""#), "{}", f.fix);
    let r = lint_one(
        r#"contents = "read""#,
        &clean_with(r#"ref = { like = "refs/heads/*" }"#),
    );
    assert!(!has(&r, "TM008"), "{r}");
}

// ------------------------------------------------------------------ TM009

#[test]
fn tm009_user_controlled_claims_only() {
    let r = lint_one(
        r#"contents = "read""#,
        "workflow = \"deploy\"\nenvironment = \"prod\"",
    );
    assert!(has(&r, "TM009"), "{r}");
    let r = lint_one(r#"contents = "read""#, "repo_property_team = \"infra\"");
    assert!(has(&r, "TM009"), "{r}");
    let r = lint_one(r#"contents = "read""#, &clean_with("workflow = \"deploy\""));
    assert!(!has(&r, "TM009"), "{r}");
}

// ------------------------------------------------------------------ TM010

#[test]
fn tm010_broad_app_permissions() {
    for perms in [
        r#"administration = "read""#,
        r#"workflows = "write""#,
        r#"secrets = "read""#,
        r#"actions = "write""#,
        r#"organization_administration = "read""#,
    ] {
        let r = lint_one(perms, CLEAN_CLAIMS);
        assert!(has(&r, "TM010"), "{perms}: {r}");
    }
    for perms in [r#"actions = "read""#, r#"contents = "write""#] {
        let r = lint_one(perms, CLEAN_CLAIMS);
        assert!(!has(&r, "TM010"), "{perms}: {r}");
    }
}

// ------------------------------------------------------------------ TM011

#[test]
fn tm011_event_name_not_allow_listed() {
    let r = lint_one(r#"contents = "write""#, CLEAN_CLAIMS);
    assert!(has(&r, "TM011"), "{r}");
    let r = lint_one(
        r#"contents = "write""#,
        &clean_with(r#"event_name = { like = "*" }"#),
    );
    assert!(has(&r, "TM011"), "{r}");
    let r = lint_one(
        r#"contents = "write""#,
        &clean_with(r#"event_name = ["push", "workflow_dispatch"]"#),
    );
    assert!(!has(&r, "TM011"), "{r}");
    let r = lint_one(r#"contents = "read""#, CLEAN_CLAIMS);
    assert!(!has(&r, "TM011"), "read-only: {r}");
}

// ------------------------------------------------------------------ TM012

#[test]
fn tm012_reusable_workflow_without_caller() {
    let jwr = r#"job_workflow_ref = "acme/shared/.github/workflows/deploy.yml@refs/heads/main""#;
    let r = lint_one(r#"contents = "read""#, jwr);
    assert!(has(&r, "TM012"), "{r}");
    let r = lint_one(
        r#"contents = "read""#,
        &format!("{jwr}\nrepository_owner_id = \"2\""),
    );
    assert!(!has(&r, "TM012"), "{r}");
}

// ------------------------------------------------------------------ IAM

const AUD: &str = r#""token.actions.githubusercontent.com:aud": "sts.amazonaws.com""#;
const SUB: &str =
    r#""token.actions.githubusercontent.com:sub": "repo:acme/app:ref:refs/heads/main""#;

fn iam(principal: &str, condition: &str) -> String {
    format!(
        r#"{{
  "Version": "2012-10-17",
  "Statement": [
    {{
      "Sid": "GitHub",
      "Effect": "Allow",
      "Principal": {principal},
      "Action": "sts:AssumeRoleWithWebIdentity",
      "Condition": {condition}
    }}
  ]
}}"#
    )
}

const FEDERATED: &str = r#"{"Federated": "arn:aws:iam::111122223333:oidc-provider/token.actions.githubusercontent.com"}"#;

fn lint_iam(text: &str) -> Report {
    lint_iam_text(text, Path::new("trust.json")).unwrap()
}

fn clean_iam_condition() -> String {
    format!(
        r#"{{"StringEquals": {{{AUD}, {SUB}, "token.actions.githubusercontent.com:repository_id": "1"}}}}"#
    )
}

#[test]
fn iam_clean_policy_has_no_findings() {
    let r = lint_iam(&iam(FEDERATED, &clean_iam_condition()));
    assert!(r.findings.is_empty(), "{r}");
}

#[test]
fn tm101_missing_aud() {
    let r = lint_iam(&iam(
        FEDERATED,
        &format!(r#"{{"StringEquals": {{{SUB}}}}}"#),
    ));
    let f = r.findings.iter().find(|f| f.rule_id == "TM101").unwrap();
    assert!(matches!(f.location, Location::Statement { index: 0, .. }));
    assert_eq!(f.line, 6, "the statement's Effect line");
    let r = lint_iam(&iam(
        FEDERATED,
        &format!(
            r#"{{"StringEquals": {{{SUB}}}, "StringLike": {{"token.actions.githubusercontent.com:aud": "sts.*"}}}}"#
        ),
    ));
    assert!(!has(&r, "TM101"), "{r}");
}

#[test]
fn tm102_for_all_values_in_allow() {
    let r = lint_iam(&iam(
        FEDERATED,
        &format!(
            r#"{{"StringEquals": {{{AUD}}}, "ForAllValues:StringLike": {{"token.actions.githubusercontent.com:sub": "repo:acme/app:*"}}}}"#
        ),
    ));
    assert!(has(&r, "TM102"), "{r}");
    assert!(
        has(&r, "TM002"),
        "a ForAllValues condition binds nothing: {r}"
    );
    let r = lint_iam(&iam(
        FEDERATED,
        &format!(
            r#"{{"StringEquals": {{{AUD}}}, "ForAnyValue:StringLike": {{"token.actions.githubusercontent.com:sub": "repo:acme/app:*"}}}}"#
        ),
    ));
    assert!(!has(&r, "TM102"), "{r}");
}

#[test]
fn tm103_principal_star() {
    let r = lint_iam(&iam(r#""*""#, &clean_iam_condition()));
    assert!(has(&r, "TM103"), "{r}");
    let r = lint_iam(&iam(r#"{"AWS": "*"}"#, &clean_iam_condition()));
    assert!(has(&r, "TM103"), "{r}");
    let r = lint_iam(&iam(FEDERATED, &clean_iam_condition()));
    assert!(!has(&r, "TM103"), "{r}");
}

#[test]
fn iam_shared_rules_sub_wildcard_no_binding_and_stringlike() {
    let r = lint_iam(&iam(
        FEDERATED,
        &format!(
            r#"{{"StringEquals": {{{AUD}}}, "StringLike": {{"token.actions.githubusercontent.com:sub": "repo:acme*"}}}}"#
        ),
    ));
    let f = r.findings.iter().find(|f| f.rule_id == "TM001").unwrap();
    assert_eq!(
        f.location,
        Location::Statement {
            index: 0,
            sid: Some("GitHub".into()),
            key: Some("token.actions.githubusercontent.com:sub".into())
        }
    );
    assert_eq!(f.line, 9, "the line of the sub key");
    let r = lint_iam(&iam(
        FEDERATED,
        &format!(r#"{{"StringEquals": {{{AUD}}}}}"#),
    ));
    assert!(has(&r, "TM002"), "{r}");
    let r = lint_iam(&iam(
        FEDERATED,
        &format!(r#"{{"StringEquals": {{{AUD}}}, "StringLike": {{{SUB}}}}}"#),
    ));
    let f = r.findings.iter().find(|f| f.rule_id == "TM008").unwrap();
    assert!(f.fix.contains("StringEquals"), "{}", f.fix);
    assert!(!ids(&r).contains("TM001"), "{r}");
}

/// Trust-policy findings are fixed in trust-policy terms: no TOML, and never
/// a key STS does not offer (repository_owner_id, runner_environment), which
/// would make the role impossible to assume.
#[test]
fn iam_fixes_name_keys_sts_offers() {
    let r = lint_iam(&iam(
        FEDERATED,
        &format!(r#"{{"StringEquals": {{{AUD}, {SUB}}}}}"#),
    ));
    assert_eq!(ids(&r), BTreeSet::from(["TM003"]), "{r}");
    let f = &r.findings[0];
    assert!(
        f.fix
            .contains(r#""token.actions.githubusercontent.com:repository_id": "<id>""#),
        "{}",
        f.fix
    );
    for f in &r.findings {
        assert!(!f.fix.contains(" = \""), "TOML in an IAM fix: {}", f.fix);
        assert!(!f.fix.contains("runner_environment"), "{}", f.fix);
    }
    let r = lint_iam(&iam(
        FEDERATED,
        &format!(r#"{{"StringEquals": {{{AUD}}}}}"#),
    ));
    let f = r.findings.iter().find(|f| f.rule_id == "TM002").unwrap();
    assert!(f.fix.contains("StringEquals"), "{}", f.fix);
}

#[test]
fn iam_deny_statements_are_not_linted_and_bad_documents_are_errors() {
    let text = r#"{"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "*"}]}"#;
    assert!(lint_iam(text).findings.is_empty());
    for bad in [
        "[]",
        "{}",
        r#"{"Statement": [{"Effect": "Maybe"}]}"#,
        r#"{"Statement": [{"Effect": "Allow", "Condition": {"StringEquals": "x"}}]}"#,
    ] {
        let e = lint_iam_text(bad, Path::new("t.json")).unwrap_err();
        assert!(matches!(e, LintError::Invalid { .. }), "{bad}: {e}");
    }
    assert!(matches!(
        lint_iam_text("{", Path::new("t.json")).unwrap_err(),
        LintError::Syntax { .. }
    ));
}

// ------------------------------------------------------------- configs, lines

#[test]
fn config_errors_are_errors_not_findings() {
    for bad in [
        "[[broker",
        "[github]\napp_id = \"1\"",
        &config(&[broker("b", r#"contents = "sometimes""#, CLEAN_CLAIMS)]),
        &config(&[broker("b", r#"contents = "read""#, "sub = []")]),
    ] {
        assert!(lint_config_text(bad, Path::new("t.toml")).is_err(), "{bad}");
    }
}

#[test]
fn findings_point_at_the_claim_line() {
    let text = config(&[
        broker("first", r#"contents = "read""#, CLEAN_CLAIMS),
        broker(
            "second",
            r#"contents = "read""#,
            &clean_with(r#"ref = { like = "refs/heads/main" }"#),
        ),
    ]);
    let r = lint_config_text(&text, Path::new("t.toml")).unwrap();
    let f = r.findings.iter().find(|f| f.rule_id == "TM008").unwrap();
    let line = text.lines().nth(f.line - 1).unwrap();
    assert!(line.starts_with("ref = { like"), "line {}: {line}", f.line);
    assert!(
        f.line
            > text
                .find("second")
                .map(|o| text[..o].lines().count())
                .unwrap()
    );
}

#[test]
fn fail_on_threshold_and_json() {
    let r = lint_one(
        r#"contents = "read""#,
        &clean_without(&["runner_environment"]),
    );
    assert_eq!(ids(&r), BTreeSet::from(["TM006"]));
    assert!(r.fails(Severity::Info));
    assert!(!r.fails(Severity::Low));
    let json = r.to_json();
    assert_eq!(json["findings"][0]["rule_id"], "TM006");
    assert_eq!(json["findings"][0]["severity"], "info");
    assert_eq!(json["findings"][0]["location"]["broker"], "b");
    assert_eq!(json["counts"]["info"], 1);
}

// -------------------------------------------------------------------- SARIF

#[test]
fn sarif_has_what_code_scanning_requires() {
    let r = lint_config_text(
        &config(&[broker(
            "b",
            r#"contents = "write""#,
            r#"sub = { like = "repo:*" }"#,
        )]),
        Path::new("deploy/tokenmint config.toml"),
    )
    .unwrap();
    assert!(!r.findings.is_empty());
    let s = to_sarif(&r);
    assert!(s["$schema"].as_str().unwrap().contains("sarif"));
    assert_eq!(s["version"], "2.1.0");
    let run = &s["runs"][0];
    let driver = &run["tool"]["driver"];
    assert_eq!(driver["name"], "tokenmint");
    assert!(driver["informationUri"]
        .as_str()
        .unwrap()
        .starts_with("https://"));
    let rules = driver["rules"].as_array().unwrap();
    assert_eq!(rules.len(), RULES.len());
    for rule in rules {
        assert!(rule["id"].as_str().unwrap().starts_with("TM"));
        for field in ["shortDescription", "fullDescription", "help"] {
            assert!(
                rule[field]["text"].as_str().is_some_and(|t| !t.is_empty()),
                "{field}"
            );
        }
        let level = rule["defaultConfiguration"]["level"].as_str().unwrap();
        assert!(["error", "warning", "note"].contains(&level));
        let sev: f64 = rule["properties"]["security-severity"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((0.1..=10.0).contains(&sev));
    }
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), r.findings.len());
    for (result, finding) in results.iter().zip(&r.findings) {
        assert_eq!(result["ruleId"], finding.rule_id);
        let index = result["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], finding.rule_id);
        assert_eq!(result["level"], finding.severity.sarif_level());
        assert!(!result["message"]["text"].as_str().unwrap().is_empty());
        let loc = &result["locations"][0]["physicalLocation"];
        assert_eq!(
            loc["artifactLocation"]["uri"],
            "deploy/tokenmint%20config.toml"
        );
        assert_eq!(
            loc["region"]["startLine"].as_u64().unwrap() as usize,
            finding.line
        );
        assert!(finding.line >= 1);
    }
    assert!(results
        .iter()
        .any(|r| r["ruleId"] == "TM001" && r["level"] == "error"));
}

// ------------------------------------------------------ brokers with trust_policy_file

/// A config in a temporary directory whose brokers use `trust_policy_file`s
/// written next to it.
fn iam_broker_config(files: &[(&str, String)], brokers: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let path = dir.path().join("tokenmint.toml");
    std::fs::write(&path, format!("{}{brokers}", config(&[]))).unwrap();
    (dir, path)
}

fn iam_broker(name: &str, permissions: &str, file: &str) -> String {
    format!(
        "[[broker]]\nname = \"{name}\"\nissuer = \"gh\"\nrepository = \"acme/app\"\npermissions = {{ {permissions} }}\ntrust_policy_file = \"{file}\"\n"
    )
}

#[test]
fn a_brokers_trust_policy_file_gets_the_iam_rules() {
    // No aud, ForAllValues, a crossing sub wildcard: what --iam-policy finds.
    let risky = iam(
        FEDERATED,
        r#"{"StringLike": {"token.actions.githubusercontent.com:sub": "repo:*"},
            "ForAllValues:StringEquals": {"token.actions.githubusercontent.com:repository_id": "1"}}"#,
    );
    let (_dir, path) = iam_broker_config(
        &[("risky.json", risky.clone())],
        &iam_broker("deploy", r#"contents = "read""#, "risky.json"),
    );
    let report = lint_config_file(&path).unwrap();
    let direct = lint_iam_text(&risky, Path::new("risky.json")).unwrap();
    assert_eq!(ids(&report), ids(&direct), "{report}");
    for id in ["TM001", "TM101", "TM102"] {
        assert!(has(&report, id), "{id}: {report}");
    }
    assert!(report.fails(Severity::High));
    let trust = path.parent().unwrap().join("risky.json");
    for f in &report.findings {
        // Located in the trust policy file, at its lines, under the broker.
        assert_eq!(f.file.as_deref(), Some(trust.as_path()), "{f:?}");
        assert!(
            matches!(&f.location, Location::BrokerStatement { broker, index: 0, .. } if broker == "deploy"),
            "{f:?}"
        );
    }
    let tm001 = report
        .findings
        .iter()
        .find(|f| f.rule_id == "TM001")
        .unwrap();
    let sub_line = risky
        .lines()
        .position(|l| l.contains(":sub"))
        .map(|i| i + 1)
        .unwrap();
    assert_eq!(tm001.line, sub_line);
    let text = report.to_string();
    assert!(
        text.contains(&format!(
            "{}:{sub_line}: high TM001 broker \"deploy\" trust_policy_file Statement[0]",
            trust.display()
        )),
        "{text}"
    );
    let json = report.to_json();
    assert_eq!(
        json["findings"][0]["file"],
        trust.display().to_string(),
        "{json}"
    );
    assert_eq!(json["findings"][0]["location"]["broker"], "deploy");
    let sarif = to_sarif(&report);
    let uri = sarif["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
        ["artifactLocation"]["uri"]
        .as_str()
        .unwrap();
    assert!(uri.ends_with("/risky.json"), "{uri}");
}

#[test]
fn a_clean_trust_policy_file_passes_and_config_rules_still_apply() {
    let clean = iam(FEDERATED, &clean_iam_condition());
    let (_dir, path) = iam_broker_config(
        &[("trust.json", clean)],
        &format!(
            "{}{}",
            iam_broker("deploy", r#"contents = "read""#, "trust.json"),
            iam_broker("admin", r#"administration = "write""#, "trust.json")
        ),
    );
    let report = lint_config_file(&path).unwrap();
    // The document is clean; TM010 (broad permission) and TM007 (same
    // policy, different permissions) are about the brokers.
    assert_eq!(ids(&report), BTreeSet::from(["TM007", "TM010"]), "{report}");
    assert!(report.findings.iter().all(|f| f.file.is_none()));
}

#[test]
fn an_unreadable_or_invalid_trust_policy_file_is_an_error() {
    let (_dir, path) = iam_broker_config(
        &[("bad.json", "{not json".to_owned())],
        &iam_broker("deploy", r#"contents = "read""#, "missing.json"),
    );
    assert!(matches!(
        lint_config_file(&path),
        Err(LintError::Read { path, .. }) if path.ends_with("missing.json")
    ));
    let (_dir, path) = iam_broker_config(
        &[("bad.json", "{not json".to_owned())],
        &iam_broker("deploy", r#"contents = "read""#, "bad.json"),
    );
    assert!(matches!(
        lint_config_file(&path),
        Err(LintError::Syntax { path, .. }) if path.ends_with("bad.json")
    ));
}

// ------------------------------------------------------------- [[role]] trust policies

const ROLE_ARN: &str = "arn:aws:iam::111122223333:role/ci/deployer";

fn role(arn: &str, file: &str) -> String {
    format!("[[role]]\narn = \"{arn}\"\ntrust_policy_file = \"{file}\"\n")
}

#[test]
fn a_roles_trust_policy_file_gets_the_iam_rules_located_in_it() {
    // Principal "*", no aud, a crossing sub wildcard, on the second statement.
    let risky = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Principal": "*", "Effect": "Deny", "Action": "sts:AssumeRoleWithWebIdentity"},
    {
      "Sid": "Ci",
      "Effect": "Allow",
      "Principal": "*",
      "Action": "sts:AssumeRoleWithWebIdentity",
      "Condition": {"StringLike": {"token.actions.githubusercontent.com:sub": "repo:*"}}
    }
  ]
}"#
    .to_owned();
    let (_dir, path) = iam_broker_config(
        &[("deployer-trust.json", risky.clone())],
        &format!(
            "{}\n{}",
            broker("b", r#"contents = "read""#, CLEAN_CLAIMS),
            role(ROLE_ARN, "deployer-trust.json")
        ),
    );
    let report = lint_config_file(&path).unwrap();
    let direct = lint_iam_text(&risky, Path::new("deployer-trust.json")).unwrap();
    assert_eq!(ids(&report), ids(&direct), "{report}");
    for id in ["TM001", "TM101", "TM103"] {
        assert!(has(&report, id), "{id}: {report}");
    }
    assert!(report.fails(Severity::High));
    let trust = path.parent().unwrap().join("deployer-trust.json");
    for f in &report.findings {
        assert_eq!(f.file.as_deref(), Some(trust.as_path()), "{f:?}");
        assert!(
            matches!(&f.location, Location::RoleStatement { role, index: 1, sid: Some(sid), .. } if role == ROLE_ARN && sid == "Ci"),
            "{f:?}"
        );
    }
    let line_of = |needle: &str| {
        risky
            .lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .unwrap()
    };
    let finding = |id: &str| report.findings.iter().find(|f| f.rule_id == id).unwrap();
    assert_eq!(finding("TM001").line, line_of(":sub"));
    assert_eq!(finding("TM101").line, line_of("\"Effect\": \"Allow\""));
    // The Deny statement's "Principal": "*" is skipped; the Allow's is found.
    let allow_principal = risky
        .lines()
        .position(|l| l.trim_start().starts_with("\"Principal\": \"*\""))
        .map(|i| i + 1)
        .unwrap();
    assert_eq!(finding("TM103").line, allow_principal);

    let text = report.to_string();
    assert!(
        text.contains(&format!(
            "{}:{}: high TM001 role \"{ROLE_ARN}\" trust_policy_file Statement[1] (\"Ci\") token.actions.githubusercontent.com:sub",
            trust.display(),
            line_of(":sub")
        )),
        "{text}"
    );
    let json = report.to_json();
    for f in json["findings"].as_array().unwrap() {
        assert_eq!(f["file"], trust.display().to_string(), "{json}");
        assert_eq!(f["location"]["role"], ROLE_ARN, "{json}");
        assert_eq!(f["location"]["statement"], 1, "{json}");
    }
    let sarif = to_sarif(&report);
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), report.findings.len());
    for r in results {
        let loc = &r["locations"][0];
        let uri = loc["physicalLocation"]["artifactLocation"]["uri"]
            .as_str()
            .unwrap();
        assert!(uri.ends_with("/deployer-trust.json"), "{uri}");
        let logical = loc["logicalLocations"][0]["fullyQualifiedName"]
            .as_str()
            .unwrap();
        assert!(
            logical.starts_with(&format!("role.{ROLE_ARN}.trust_policy_file.Statement[1]")),
            "{logical}"
        );
        assert!(
            r["message"]["text"].as_str().unwrap().contains(ROLE_ARN),
            "{r}"
        );
    }
    let tm001 = results.iter().find(|r| r["ruleId"] == "TM001").unwrap();
    assert_eq!(
        tm001["locations"][0]["physicalLocation"]["region"]["startLine"],
        line_of(":sub")
    );
}

#[test]
fn every_role_is_linted_in_order_and_a_clean_one_adds_nothing() {
    let clean = iam(FEDERATED, &clean_iam_condition());
    let no_aud = iam(
        FEDERATED,
        &format!(
            r#"{{"StringEquals": {{{SUB}, "token.actions.githubusercontent.com:repository_id": "1", "token.actions.githubusercontent.com:runner_environment": "github-hosted"}}}}"#
        ),
    );
    let other = "arn:aws:iam::111122223333:role/other";
    let (_dir, path) = iam_broker_config(
        &[("clean.json", clean), ("no-aud.json", no_aud)],
        &format!(
            "{}\n{}\n{}\n{}",
            broker("b", r#"contents = "read""#, CLEAN_CLAIMS),
            role(ROLE_ARN, "clean.json"),
            role(other, "no-aud.json"),
            role("arn:aws:iam::111122223333:role/again", "no-aud.json"),
        ),
    );
    let report = lint_config_file(&path).unwrap();
    let roles: Vec<&str> = report
        .findings
        .iter()
        .map(|f| match &f.location {
            Location::RoleStatement { role, .. } => role.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        roles,
        [other, "arn:aws:iam::111122223333:role/again"],
        "{report}"
    );
    assert!(report.findings.iter().all(|f| f.rule_id == "TM101"));
}

#[test]
fn a_role_without_a_readable_trust_policy_file_is_an_error() {
    let (_dir, path) = iam_broker_config(
        &[],
        &format!(
            "{}\n{}",
            broker("b", r#"contents = "read""#, CLEAN_CLAIMS),
            role(ROLE_ARN, "missing.json")
        ),
    );
    assert!(matches!(
        lint_config_file(&path),
        Err(LintError::Read { path, .. }) if path.ends_with("missing.json")
    ));
    let (_dir, path) = iam_broker_config(
        &[],
        &format!(
            "{}\n[[role]]\narn = \"{ROLE_ARN}\"\n",
            broker("b", r#"contents = "read""#, CLEAN_CLAIMS)
        ),
    );
    assert!(matches!(
        lint_config_file(&path),
        Err(LintError::Invalid { entry, .. }) if entry.contains(ROLE_ARN)
    ));
}
