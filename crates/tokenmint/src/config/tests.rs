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
        &c.github.key,
        crate::config::AppKeySource::Ssm { parameter, .. } if parameter == "/github-app/private-key-pem"
    ));
    let c = parse_aws(&with("kms_key_id = \"alias/github-app\"")).unwrap();
    assert!(matches!(c.github.key, crate::config::AppKeySource::Kms(_)));

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
