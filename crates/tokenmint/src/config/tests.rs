//! Tests for config validation: every rejection rule has a case that would pass if the rule were removed.

use super::*;
use std::sync::OnceLock;

fn pem() -> &'static str {
    static PEM: OnceLock<String> = OnceLock::new();
    PEM.get_or_init(|| RsaSigningKey::generate_pem().unwrap().1)
}

fn env(name: &str) -> Option<String> {
    (name == "APP_KEY").then(|| pem().to_owned())
}

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:8080"
explain_denials = false

[audit]
database = "sqlite://audit.db"

[github]
api_url = "https://api.github.com"
app_id = "123456"
private_key_env = "APP_KEY"

[[issuer]]
name = "github-actions"
url = "https://token.actions.githubusercontent.com"
audiences = ["tokenmint"]
algorithms = ["RS256"]
max_token_age_seconds = 900
leeway_seconds = 60

[[broker]]
name = "widgets-read"
issuer = "github-actions"
repository = "acme/widgets"
permissions = { contents = "read", issues = "write" }
[broker.claims]
repository_owner_id = "1234"
sub = ["repo:acme/app:ref:refs/heads/main", "repo:acme/app:environment:prod"]
job_workflow_ref = { like = "acme/app/.github/workflows/*@refs/heads/main" }
ref = { matches = "refs/heads/(main|release/.*)" }
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/tokenmint/tokenmint.toml"), &env)
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn issue_example_parses() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.audit.database, "sqlite:///etc/tokenmint/audit.db");
    let b = &c.brokers["widgets-read"];
    assert_eq!((b.owner.as_str(), b.repo.as_str()), ("acme", "widgets"));
    assert_eq!(b.repository_id, None);
    let i = &c.issuers[0];
    assert_eq!(i.algorithms, vec![Algorithm::RS256]);
    assert_eq!(i.max_token_lifetime, Duration::from_secs(21_600));
    // The key never shows in Debug.
    assert!(!format!("{c:?}").contains("PRIVATE KEY"));
}

#[test]
fn defaults_apply() {
    let text = GOOD
        .replace("algorithms = [\"RS256\"]\n", "")
        .replace("leeway_seconds = 60\n", "")
        .replace("[audit]\ndatabase = \"sqlite://audit.db\"\n", "");
    let c = parse(&text).unwrap();
    assert_eq!(c.issuers[0].algorithms, vec![Algorithm::RS256]);
    assert_eq!(c.issuers[0].leeway, Duration::from_secs(60));
    assert_eq!(
        c.audit.database,
        "sqlite:///etc/tokenmint/tokenmint-audit.db"
    );
}

#[test]
fn unknown_keys_are_rejected_everywhere() {
    for (from, to) in [
        (
            "explain_denials = false",
            "explain_denials = false\nlisten_port = 1",
        ),
        ("app_id = \"123456\"", "app_id = \"123456\"\nappid = 1"),
        (
            "leeway_seconds = 60",
            "leeway_seconds = 60\naudience = \"x\"",
        ),
        (
            "repository = \"acme/widgets\"",
            "repository = \"acme/widgets\"\nrepositories = []",
        ),
    ] {
        let e = err(&GOOD.replacen(from, to, 1));
        assert!(e.contains("unknown field"), "{e}");
        assert!(e.starts_with("/etc/tokenmint/tokenmint.toml"), "{e}");
    }
    let e = err(&format!("{GOOD}\n[extra]\nx = 1\n"));
    assert!(e.contains("unknown field"), "{e}");
}

#[test]
fn broker_without_conditions_is_rejected() {
    let text = GOOD.split("[broker.claims]").next().unwrap();
    let e = err(text);
    assert!(e.contains("[[broker]] \"widgets-read\""), "{e}");
}

#[test]
fn unknown_issuer_reference_is_rejected() {
    let e = err(&GOOD.replace("issuer = \"github-actions\"", "issuer = \"gitlab\""));
    assert!(e.contains("unknown issuer \"gitlab\""), "{e}");
    assert!(e.contains("[[broker]] \"widgets-read\""), "{e}");
}

#[test]
fn duplicate_names_are_rejected() {
    let broker = &GOOD[GOOD.find("[[broker]]").unwrap()..];
    let e = err(&format!("{GOOD}\n{broker}"));
    assert!(e.contains("duplicate broker name"), "{e}");

    let issuer = "[[issuer]]\nname = \"github-actions\"\nurl = \"https://other.example\"\naudiences = [\"x\"]\n";
    let e = err(&GOOD.replacen("[[broker]]", &format!("{issuer}\n[[broker]]"), 1));
    assert!(e.contains("duplicate issuer name"), "{e}");

    let issuer = "[[issuer]]\nname = \"second\"\nurl = \"https://token.actions.githubusercontent.com\"\naudiences = [\"x\"]\n";
    let e = err(&GOOD.replacen("[[broker]]", &format!("{issuer}\n[[broker]]"), 1));
    assert!(e.contains("already has url"), "{e}");
}

#[test]
fn permissions_follow_githubs_vocabulary() {
    let e = err(&GOOD.replace("issues = \"write\"", "isues = \"write\""));
    assert!(e.contains("unknown GitHub App permission `isues`"), "{e}");
    let e = err(&GOOD.replace("issues = \"write\"", "issues = \"admin\""));
    assert!(e.contains("does not allow level `admin`"), "{e}");
    let e = err(&GOOD.replace(
        "permissions = { contents = \"read\", issues = \"write\" }",
        "permissions = {}",
    ));
    assert!(e.contains("empty"), "{e}");
}

#[test]
fn non_loopback_http_is_rejected() {
    let e = err(&GOOD.replace("https://api.github.com", "http://api.github.com"));
    assert!(
        e.contains("[github] api_url") && e.contains("http:// on a non-loopback host"),
        "{e}"
    );
    let e = err(&GOOD.replace(
        "https://token.actions.githubusercontent.com",
        "http://token.actions.githubusercontent.com",
    ));
    assert!(e.contains("non-loopback"), "{e}");
    let e = err(&GOOD.replace(
        "leeway_seconds = 60",
        "leeway_seconds = 60\njwks_url = \"http://10.0.0.1/jwks\"",
    ));
    assert!(e.contains("jwks_url"), "{e}");
    for ok in [
        "http://127.0.0.1:9000",
        "http://localhost:9000",
        "http://[::1]:9000",
        "http://127.8.9.1",
    ] {
        parse(&GOOD.replace("https://api.github.com", ok)).unwrap();
    }
    let e = err(&GOOD.replace("https://api.github.com", "https://user:pw@api.github.com"));
    assert!(e.contains("credentials"), "{e}");
}

#[test]
fn names_and_repositories_are_checked() {
    let e = err(&GOOD.replace("name = \"widgets-read\"", "name = \"widgets read\""));
    assert!(e.contains("1 to 64 characters"), "{e}");
    let long = "a".repeat(65);
    assert!(parse(&GOOD.replace("widgets-read", &long)).is_err());
    parse(&GOOD.replace("widgets-read", &"a".repeat(64))).unwrap();
    for bad in [
        "acme",
        "acme/*",
        "acme/widgets/x",
        "../widgets",
        "acme/..",
        "/widgets",
        "acme/",
    ] {
        let e = err(&GOOD.replace("\"acme/widgets\"", &format!("{bad:?}")));
        assert!(e.contains("repository"), "{bad}: {e}");
    }
}

#[test]
fn repository_id_must_be_decimal() {
    let c = parse(&GOOD.replace(
        "repository = \"acme/widgets\"",
        "repository = \"acme/widgets\"\nrepository_id = \"56789\"",
    ))
    .unwrap();
    assert_eq!(c.brokers["widgets-read"].repository_id, Some(56789));
    for bad in ["\"x1\"", "\"-1\"", "\"0\"", "\"\""] {
        let e = err(&GOOD.replace(
            "repository = \"acme/widgets\"",
            &format!("repository = \"acme/widgets\"\nrepository_id = {bad}"),
        ));
        assert!(e.contains("repository_id"), "{bad}: {e}");
    }
}

#[test]
fn algorithms_never_none_or_hmac() {
    for bad in ["none", "HS256", "RS1"] {
        let e = err(&GOOD.replace(
            "algorithms = [\"RS256\"]",
            &format!("algorithms = [\"{bad}\"]"),
        ));
        assert!(e.contains("algorithms"), "{bad}: {e}");
    }
    let e = err(&GOOD.replace("algorithms = [\"RS256\"]", "algorithms = []"));
    assert!(e.contains("algorithms is empty"), "{e}");
}

#[test]
fn audiences_required_and_non_empty() {
    let e = err(&GOOD.replace("audiences = [\"tokenmint\"]", "audiences = []"));
    assert!(e.contains("audiences"), "{e}");
    let e = err(&GOOD.replace("audiences = [\"tokenmint\"]\n", ""));
    assert!(e.contains("missing field `audiences`"), "{e}");
}

#[test]
fn leeway_is_bounded() {
    let e = err(&GOOD.replace("leeway_seconds = 60", "leeway_seconds = 3600"));
    assert!(e.contains("leeway_seconds"), "{e}");
}

#[test]
fn single_use_defaults_off_and_parses() {
    assert!(!parse(GOOD).unwrap().issuers[0].single_use);
    let on = GOOD.replace(
        "leeway_seconds = 60",
        "leeway_seconds = 60\nsingle_use = true",
    );
    assert!(parse(&on).unwrap().issuers[0].single_use);
    let off = GOOD.replace(
        "leeway_seconds = 60",
        "leeway_seconds = 60\nsingle_use = false",
    );
    assert!(!parse(&off).unwrap().issuers[0].single_use);
    // A string is not a boolean: refused rather than read as "on".
    let e = err(&GOOD.replace(
        "leeway_seconds = 60",
        "leeway_seconds = 60\nsingle_use = \"yes\"",
    ));
    assert!(
        e.contains("single_use") || e.contains("invalid type"),
        "{e}"
    );
    // Misspelt: unknown field, not silently off.
    let e = err(&GOOD.replace(
        "leeway_seconds = 60",
        "leeway_seconds = 60\nsingle_used = true",
    ));
    assert!(e.contains("unknown field"), "{e}");
}

#[test]
fn key_source_is_required_and_parsed() {
    let e = err(&GOOD.replace(
        "private_key_env = \"APP_KEY\"",
        "private_key_env = \"UNSET_VAR\"",
    ));
    assert!(e.contains("UNSET_VAR is unset"), "{e}");
    let e = err(&GOOD.replace("private_key_env = \"APP_KEY\"", ""));
    assert!(e.contains("no App private key"), "{e}");
    let e = err(&GOOD.replace(
        "private_key_env = \"APP_KEY\"",
        "private_key_env = \"APP_KEY\"\nprivate_key_file = \"k.pem\"",
    ));
    assert!(e.contains("only one"), "{e}");
    let e = err(&GOOD.replace(
        "private_key_env = \"APP_KEY\"",
        "private_key_file = \"/nonexistent/k.pem\"",
    ));
    assert!(e.contains("cannot read /nonexistent/k.pem"), "{e}");
    let garbage = Config::parse(GOOD, Path::new("t.toml"), &|_| Some("not a key".into()));
    assert!(garbage
        .unwrap_err()
        .to_string()
        .contains("decode GitHub App private key PEM"));
}

#[test]
fn key_file_is_relative_to_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.pem"), pem()).unwrap();
    let path = dir.path().join("tokenmint.toml");
    std::fs::write(
        &path,
        GOOD.replace(
            "private_key_env = \"APP_KEY\"",
            "private_key_file = \"app.pem\"",
        ),
    )
    .unwrap();
    let c = Config::load(&path).unwrap();
    assert!(c
        .audit
        .database
        .starts_with(&format!("sqlite://{}", dir.path().display())));
}

#[test]
fn missing_file_names_it() {
    let e = Config::load(Path::new("/nonexistent/tokenmint.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("/nonexistent/tokenmint.toml: cannot read"),
        "{e}"
    );
}

#[test]
fn unsupported_database_is_rejected() {
    let e = err(&GOOD.replace("sqlite://audit.db", "mysql://x"));
    assert!(e.contains("[audit] database"), "{e}");
    let c = parse(&GOOD.replace("sqlite://audit.db", "postgres://u@127.0.0.1/test")).unwrap();
    assert_eq!(c.audit.database, "postgres://u@127.0.0.1/test");
}

fn iam_config(dir: &Path, policy: &str) -> Result<Config, ConfigError> {
    std::fs::write(dir.join("trust.json"), policy).unwrap();
    let text = GOOD.replace(
        &GOOD[GOOD.find("[broker.claims]").unwrap()..],
        "trust_policy_file = \"trust.json\"\n",
    );
    Config::parse(&text, &dir.join("tokenmint.toml"), &env)
}

const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
 "Principal":{"Federated":"arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"},
 "Action":"sts:AssumeRoleWithWebIdentity",
 "Condition":{"StringEquals":{"token.actions.githubusercontent.com:aud":"tokenmint"},
              "StringLike":{"token.actions.githubusercontent.com:sub":"repo:acme/app:*"}}}]}"#;

#[test]
fn trust_policy_file_is_loaded_and_bound_to_the_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let c = iam_config(dir.path(), TRUST).unwrap();
    match &c.brokers["widgets-read"].policy {
        BrokerPolicy::Iam {
            provider, account, ..
        } => {
            assert_eq!(provider, "token.actions.githubusercontent.com");
            assert_eq!(account, "123456789012");
        }
        other => panic!("expected an IAM policy, got {other:?}"),
    }
    // A policy for another provider cannot be reused for this issuer.
    let other = TRUST.replace(
        "oidc-provider/token.actions.githubusercontent.com",
        "oidc-provider/gitlab.com",
    );
    let e = iam_config(dir.path(), &other).unwrap_err().to_string();
    assert!(
        e.contains("Principal.Federated names this broker's issuer"),
        "{e}"
    );
    // Malformed documents name the file.
    let e = iam_config(dir.path(), "{\"Statement\": 5}")
        .unwrap_err()
        .to_string();
    assert!(e.contains("trust.json"), "{e}");
}

#[test]
fn claims_and_trust_policy_file_are_exclusive_and_one_is_required() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("trust.json"), TRUST).unwrap();
    let both = GOOD.replace(
        "[broker.claims]",
        "trust_policy_file = \"trust.json\"\n[broker.claims]",
    );
    let e = Config::parse(&both, &dir.path().join("t.toml"), &env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not both"), "{e}");
    let neither = GOOD.split("[broker.claims]").next().unwrap();
    let e = Config::parse(neither, &dir.path().join("t.toml"), &env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no trust policy"), "{e}");
    let missing = GOOD.replace(
        &GOOD[GOOD.find("[broker.claims]").unwrap()..],
        "trust_policy_file = \"absent.json\"\n",
    );
    let e = Config::parse(&missing, &dir.path().join("t.toml"), &env)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cannot read") && e.contains("absent.json"),
        "{e}"
    );
}

#[test]
fn audit_chain_defaults_to_main_and_is_validated() {
    assert_eq!(parse(GOOD).unwrap().audit.chain, "main");
    let c = parse(&GOOD.replace(
        "database = \"sqlite://audit.db\"",
        "database = \"sqlite://audit.db\"\nchain = \"replica-a\"",
    ))
    .unwrap();
    assert_eq!(c.audit.chain, "replica-a");
    for bad in ["", "a b", "x\\ny", &"a".repeat(65)] {
        let e = err(&GOOD.replace(
            "database = \"sqlite://audit.db\"",
            &format!("database = \"sqlite://audit.db\"\nchain = {bad:?}"),
        ));
        assert!(e.contains("[audit] chain"), "{bad:?}: {e}");
    }
}

#[test]
fn audit_allow_prune_is_off_unless_set() {
    assert!(!parse(GOOD).unwrap().audit.allow_prune);
    let with = |v: &str| {
        GOOD.replace(
            "database = \"sqlite://audit.db\"",
            &format!("database = \"sqlite://audit.db\"\nallow_prune = {v}"),
        )
    };
    assert!(parse(&with("true")).unwrap().audit.allow_prune);
    assert!(!parse(&with("false")).unwrap().audit.allow_prune);
    assert!(err(&with("\"yes\"")).contains("allow_prune"));
}

fn role_config(dir: &Path, roles: &str) -> Result<Config, ConfigError> {
    std::fs::write(dir.join("role-trust.json"), TRUST).unwrap();
    Config::parse(
        &format!("{GOOD}\n{roles}"),
        &dir.join("tokenmint.toml"),
        &env,
    )
}

fn role_err(dir: &Path, roles: &str) -> String {
    role_config(dir, roles).unwrap_err().to_string()
}

#[test]
fn roles_are_off_by_default_and_parsed_when_present() {
    assert!(!parse(GOOD).unwrap().sts.enabled());
    let dir = tempfile::tempdir().unwrap();
    let c = role_config(
        dir.path(),
        r#"[[role]]
arn = "arn:aws:iam::123456789012:role/ci/deployer"
trust_policy_file = "role-trust.json"
[[role]]
arn = "arn:aws:iam::123456789012:role/long"
trust_policy_file = "role-trust.json"
max_session_duration = 43200
"#,
    )
    .unwrap();
    assert!(c.sts.enabled());
    assert!(c.sts.key.is_none());
    let role = &c.sts.roles["arn:aws:iam::123456789012:role/ci/deployer"];
    assert_eq!(role.arn.account(), "123456789012");
    assert_eq!(role.arn.name(), "deployer");
    assert_eq!(role.max_session_duration.as_secs(), 3600);
    let long = &c.sts.roles["arn:aws:iam::123456789012:role/long"];
    assert_eq!(long.max_session_duration.as_secs(), 43200);
}

/// GOOD without its `[github]` section.
fn without_github(text: &str) -> String {
    let start = text.find("[github]").unwrap();
    let end = start + text[start..].find("[[issuer]]").unwrap();
    format!("{}{}", &text[..start], &text[end..])
}

/// GOOD's `[[issuer]]`s and no broker.
fn without_brokers(text: &str) -> String {
    text[..text.find("[[broker]]").unwrap()].to_owned()
}

/// Only brokers mint GitHub tokens: a config that serves just the
/// STS-compatible endpoint (`[[role]]`s, no broker) needs no `[github]`.
/// Brokers without it are refused, and so is a config that serves nothing.
#[test]
fn github_is_required_by_brokers_and_not_by_roles() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenmint.toml");
    std::fs::write(dir.path().join("role-trust.json"), TRUST).unwrap();
    let role = r#"
[[role]]
arn = "arn:aws:iam::123456789012:role/ci/deployer"
trust_policy_file = "role-trust.json"
"#;
    let sts_only = format!("{}{role}", without_brokers(&without_github(GOOD)));
    assert!(!sts_only.contains("[github]") && !sts_only.contains("[[broker]]"));
    let c = Config::parse(&sts_only, &path, &env).unwrap();
    assert!(c.github.is_none());
    assert!(c.brokers.is_empty());
    assert!(c.sts.enabled());

    // A [github] given with roles only is still checked.
    let bad_github = format!(
        "{}{role}",
        without_brokers(&GOOD.replace("app_id = \"123456\"", "app_id = \" \""))
    );
    let e = Config::parse(&bad_github, &path, &env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[github] app_id"), "{e}");

    let e = err(&without_github(GOOD));
    assert!(
        e.contains("[github]: missing") && e.contains("private_key_file"),
        "{e}"
    );

    let e = err(&without_brokers(GOOD));
    assert!(
        e.contains("[[broker]]: no brokers are configured") && e.contains("[[role]]"),
        "{e}"
    );
}

#[test]
fn role_arns_are_validated() {
    for bad in [
        "arn:aws:iam::12345678901:role/x",
        "arn:aws:iam::1234567890123:role/x",
        "arn:aws:iam::12345678901a:role/x",
        "arn:aws:iam::123456789012:user/x",
        "arn:aws:sts::123456789012:role/x",
        "arn:aws:iam::123456789012:role/",
        "arn:aws:iam::123456789012:role/a//b",
        "arn:aws:iam::123456789012:role/a b",
        "arn:aws:iam::123456789012:role/a*",
    ] {
        assert!(RoleArn::parse(bad).is_err(), "{bad}");
    }
    assert!(RoleArn::parse(&format!(
        "arn:aws:iam::123456789012:role/{}",
        "n".repeat(65)
    ))
    .is_err());
    assert!(RoleArn::parse(&format!(
        "arn:aws:iam::123456789012:role/{}",
        "n".repeat(64)
    ))
    .is_ok());
    let arn = RoleArn::parse("arn:aws:iam::123456789012:role/p/q/Name+=,.@-_1").unwrap();
    assert_eq!(arn.name(), "Name+=,.@-_1");
    let dir = tempfile::tempdir().unwrap();
    let e = role_err(
        dir.path(),
        "[[role]]\narn = \"arn:aws:iam::1:role/x\"\ntrust_policy_file = \"role-trust.json\"\n",
    );
    assert!(e.contains("[[role]]") && e.contains("arn"), "{e}");
}

#[test]
fn role_session_duration_bounds_and_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let role = |max: &str| {
        format!("[[role]]\narn = \"arn:aws:iam::123456789012:role/x\"\ntrust_policy_file = \"role-trust.json\"\n{max}\n")
    };
    for bad in [
        "max_session_duration = 3599",
        "max_session_duration = 43201",
        "max_session_duration = 900",
    ] {
        let e = role_err(dir.path(), &role(bad));
        assert!(e.contains("max_session_duration"), "{e}");
    }
    assert!(role_config(dir.path(), &role("max_session_duration = 3600")).is_ok());
    let e = role_err(dir.path(), &format!("{}{}", role(""), role("")));
    assert!(e.contains("duplicate role ARN"), "{e}");
}

#[test]
fn role_trust_policy_must_name_an_issuer_in_the_role_account() {
    let dir = tempfile::tempdir().unwrap();
    // The policy names account 123456789012; a role in another account cannot use it.
    let e = role_err(
        dir.path(),
        "[[role]]\narn = \"arn:aws:iam::210987654321:role/x\"\ntrust_policy_file = \"role-trust.json\"\n",
    );
    assert!(
        e.contains("Principal.Federated") && e.contains("210987654321"),
        "{e}"
    );
    let e = role_err(
        dir.path(),
        "[[role]]\narn = \"arn:aws:iam::123456789012:role/x\"\ntrust_policy_file = \"absent.json\"\n",
    );
    assert!(e.contains("cannot read"), "{e}");
}

#[test]
fn sts_secret_file_is_loaded_checked_and_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let role = "[[role]]\narn = \"arn:aws:iam::123456789012:role/x\"\ntrust_policy_file = \"role-trust.json\"\n";
    std::fs::write(dir.path().join("sts.key"), "a".repeat(64)).unwrap();
    let c = role_config(
        dir.path(),
        &format!("{role}[sts]\nsecret_file = \"sts.key\"\n"),
    )
    .unwrap();
    let key = c.sts.key.unwrap();
    assert!(!format!("{key:?}").contains("aaaa"));
    std::fs::write(dir.path().join("short.key"), "a".repeat(31)).unwrap();
    let e = role_err(
        dir.path(),
        &format!("{role}[sts]\nsecret_file = \"short.key\"\n"),
    );
    assert!(e.contains("at least 32"), "{e}");
    let e = role_err(dir.path(), "[sts]\nsecret_file = \"sts.key\"\n");
    assert!(e.contains("no [[role]]"), "{e}");
}

#[test]
fn max_in_flight_defaults_and_bounds() {
    assert_eq!(
        parse(GOOD).unwrap().server.max_in_flight,
        crate::config::DEFAULT_MAX_IN_FLIGHT
    );
    let with = |v: &str| {
        GOOD.replace(
            "explain_denials = false",
            &format!("explain_denials = false\nmax_in_flight = {v}"),
        )
    };
    assert_eq!(parse(&with("8")).unwrap().server.max_in_flight, 8);
    assert_eq!(parse(&with("65536")).unwrap().server.max_in_flight, 65536);
    for bad in ["0", "-1", "65537"] {
        let e = err(&with(bad));
        assert!(
            e.contains("[server] max_in_flight") && e.contains("1..=65536"),
            "{bad}: {e}"
        );
    }
    assert!(err(&with("\"many\"")).contains("max_in_flight"));
}

#[test]
fn metrics_endpoint_is_on_by_default_and_can_be_turned_off() {
    assert!(parse(GOOD).unwrap().server.metrics);
    let off = GOOD.replace(
        "explain_denials = false",
        "explain_denials = false\nmetrics = false",
    );
    assert!(!parse(&off).unwrap().server.metrics);
    let bad = GOOD.replace(
        "explain_denials = false",
        "explain_denials = false\nmetrics = \"yes\"",
    );
    assert!(err(&bad).contains("metrics"), "{}", err(&bad));
}

#[test]
fn limits_default_on_and_parse() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.limits.per_broker, Quota::new(100.0, 2000).unwrap());
    assert_eq!(c.limits.per_subject, Quota::new(10.0, 300).unwrap());
    assert_eq!(c.limits.max_subjects, 100_000);
    assert_eq!(c.brokers["widgets-read"].rate_limit, c.limits.per_broker);
    assert_eq!(c.github.as_ref().unwrap().max_concurrent_requests, 32);
    assert_eq!(
        c.github.as_ref().unwrap().max_queue_wait,
        Duration::from_secs(2)
    );

    let text = GOOD
        .replace(
            "private_key_env = \"APP_KEY\"\n",
            "private_key_env = \"APP_KEY\"\nmax_concurrent_requests = 4\nmax_queue_wait_ms = 250\n",
        )
        .replace(
            "[[issuer]]",
            "[limits]\nper_broker = { rate_per_second = 5, burst = 50 }\nper_subject = { burst = 7 }\nmax_subjects = 10\n\n[[issuer]]",
        )
        .replace(
            "permissions = { contents = \"read\", issues = \"write\" }\n",
            "permissions = { contents = \"read\", issues = \"write\" }\nrate_limit = { rate_per_second = 0.5 }\n",
        );
    let c = parse(&text).unwrap();
    assert_eq!(c.limits.per_broker, Quota::new(5.0, 50).unwrap());
    assert_eq!(c.limits.per_subject, Quota::new(10.0, 7).unwrap());
    assert_eq!(c.limits.max_subjects, 10);
    // A broker's own limit takes missing fields from [limits] per_broker.
    assert_eq!(
        c.brokers["widgets-read"].rate_limit,
        Quota::new(0.5, 50).unwrap()
    );
    assert_eq!(c.github.as_ref().unwrap().max_concurrent_requests, 4);
    assert_eq!(
        c.github.as_ref().unwrap().max_queue_wait,
        Duration::from_millis(250)
    );
}

#[test]
fn zero_or_bad_limits_are_refused_with_clear_messages() {
    let with_limits =
        |table: &str| GOOD.replace("[[issuer]]", &format!("[limits]\n{table}\n\n[[issuer]]"));
    let e = err(&with_limits(
        "per_subject = { rate_per_second = 0, burst = 5 }",
    ));
    assert!(e.contains("[limits] per_subject"), "{e}");
    assert!(
        e.contains("rate_per_second must be a positive number"),
        "{e}"
    );
    let e = err(&with_limits(
        "per_broker = { rate_per_second = 1, burst = 0 }",
    ));
    assert!(e.contains("[limits] per_broker"), "{e}");
    assert!(e.contains("burst must be at least 1"), "{e}");
    let e = err(&with_limits("per_broker = { rate_per_second = -2.5 }"));
    assert!(
        e.contains("rate_per_second must be a positive number"),
        "{e}"
    );
    let e = err(&with_limits("per_subject = { rate_per_second = 5e6 }"));
    assert!(e.contains("at most"), "{e}");
    let e = err(&with_limits("max_subjects = 0"));
    assert!(e.contains("[limits] max_subjects"), "{e}");
    // Unknown keys and negative bursts are refused by the parser.
    assert!(err(&with_limits("per_subject = { rate = 1 }")).contains("unknown field"));
    assert!(parse(&with_limits("per_subject = { burst = -1 }")).is_err());

    let e = err(&GOOD.replace(
        "permissions = { contents = \"read\", issues = \"write\" }\n",
        "permissions = { contents = \"read\", issues = \"write\" }\nrate_limit = { burst = 0 }\n",
    ));
    assert!(e.contains("[[broker]] \"widgets-read\" rate_limit"), "{e}");
    assert!(e.contains("burst must be at least 1"), "{e}");

    for bad in ["max_concurrent_requests = 0", "max_queue_wait_ms = 0"] {
        let e = err(&GOOD.replace(
            "private_key_env = \"APP_KEY\"\n",
            &format!("private_key_env = \"APP_KEY\"\n{bad}\n"),
        ));
        assert!(e.contains("out of range"), "{bad}: {e}");
    }
}

#[test]
fn ssm_and_kms_key_sources_are_literal_and_exclusive() {
    let with = |line: &str| GOOD.replace("private_key_env = \"APP_KEY\"", line);
    let aws = |name: &str| match name {
        "AWS_REGION" => Some("eu-west-1".to_owned()),
        "AWS_ACCESS_KEY_ID" => Some("AKID".to_owned()),
        "AWS_SECRET_ACCESS_KEY" => Some("s".to_owned()),
        _ => env(name),
    };
    let parse_aws = |text: &str| Config::parse(text, Path::new("/etc/t.toml"), &aws);

    let c = parse_aws(&with("private_key_ssm = \"/github-app/private-key-pem\"")).unwrap();
    assert!(matches!(
        &c.github.as_ref().unwrap().key,
        crate::config::AppKeySource::Ssm { parameter, .. } if parameter == "/github-app/private-key-pem"
    ));
    let c = parse_aws(&with("kms_key_id = \"alias/github-app\"")).unwrap();
    assert!(matches!(
        c.github.as_ref().unwrap().key,
        crate::config::AppKeySource::Kms(_)
    ));

    for (line, expected) in [
        (
            "private_key_ssm = \"/app/*\"",
            "must be a literal absolute SSM parameter path",
        ),
        (
            "private_key_ssm = \"arn:aws:ssm:eu-west-1:1:parameter/k\"",
            "must be a literal absolute SSM parameter path",
        ),
        ("kms_key_id = \"alias/*\"", "must be a literal KMS key id"),
        (
            "kms_key_id = \"alias/a\"\nprivate_key_ssm = \"/k\"",
            "set only one of",
        ),
        (
            "private_key_env = \"APP_KEY\"\nkms_key_id = \"alias/a\"",
            "set only one of",
        ),
    ] {
        let e = parse_aws(&with(line)).unwrap_err().to_string();
        assert!(e.contains(expected), "{line}: {e}");
    }
    // Without AWS credentials in the environment, the source cannot be used.
    let e = err(&with("kms_key_id = \"alias/github-app\""));
    assert!(e.contains("AWS_REGION is not set"), "{e}");
}
