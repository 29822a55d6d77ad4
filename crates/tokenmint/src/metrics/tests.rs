//! Unit tests of the metrics registry: pre-created series, the unknown-broker rule, histograms, GitHub calls and the rate-limit gauge, rendering.

use super::*;

fn metrics(github: GithubMetrics) -> Metrics {
    Metrics::new(Sources {
        brokers: vec!["deploy", "read-only"],
        github,
        caches: Vec::new(),
        audit_write: audit_write_histogram(),
    })
}

/// The value of the exposition line that starts with `series ` (exact series).
fn value(text: &str, series: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(str::to_owned)
}

#[test]
fn every_broker_and_outcome_series_exists_before_any_exchange() {
    let text = metrics(GithubMetrics::default()).render().unwrap();
    for broker in ["deploy", "read-only", UNKNOWN_BROKER] {
        for outcome in Outcome::ALL {
            let series = format!(
                "tokenmint_exchanges_total{{broker=\"{broker}\",outcome=\"{}\"}}",
                outcome.as_str()
            );
            assert_eq!(
                value(&text, &series).as_deref(),
                Some("0"),
                "{series}\n{text}"
            );
        }
    }
    for class in CLASSES {
        let series = format!("tokenmint_exchange_duration_seconds_count{{class=\"{class}\"}}");
        assert_eq!(value(&text, &series).as_deref(), Some("0"), "{text}");
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
    // No rate-limit figure until GitHub has sent one.
    assert!(
        !text.contains("\ntokenmint_github_rate_limit_remaining "),
        "{text}"
    );
}

#[test]
fn exchanges_are_counted_by_broker_and_outcome_and_timed_by_class() {
    let m = metrics(GithubMetrics::default());
    m.record_exchange("deploy", Outcome::Allowed, Duration::from_micros(300));
    m.record_exchange("deploy", Outcome::Allowed, Duration::from_millis(3));
    m.record_exchange("deploy", Outcome::Denied, Duration::from_millis(1));
    m.record_exchange("read-only", Outcome::UpstreamError, Duration::from_secs(2));
    let text = m.render().unwrap();
    let count = |broker: &str, outcome: &str| {
        value(
            &text,
            &format!("tokenmint_exchanges_total{{broker=\"{broker}\",outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(count("deploy", "allowed").as_deref(), Some("2"));
    assert_eq!(count("deploy", "denied").as_deref(), Some("1"));
    assert_eq!(count("read-only", "upstream_error").as_deref(), Some("1"));
    assert_eq!(count("read-only", "allowed").as_deref(), Some("0"));
    let hist = |what: &str| {
        value(
            &text,
            &format!("tokenmint_exchange_duration_seconds_{what}"),
        )
    };
    assert_eq!(hist("count{class=\"allowed\"}").as_deref(), Some("2"));
    assert_eq!(hist("count{class=\"refused\"}").as_deref(), Some("1"));
    assert_eq!(hist("count{class=\"failed\"}").as_deref(), Some("1"));
    // 0.3 ms falls in the first bucket, 3 ms only from the 5 ms bucket on.
    assert_eq!(
        hist("bucket{le=\"0.0005\",class=\"allowed\"}").as_deref(),
        Some("1"),
        "{text}"
    );
    assert_eq!(
        hist("bucket{le=\"0.005\",class=\"allowed\"}").as_deref(),
        Some("2"),
        "{text}"
    );
}

#[test]
fn a_caller_chosen_broker_name_never_becomes_a_label() {
    let m = metrics(GithubMetrics::default());
    for name in ["no-such-broker", "attacker-chosen-1", "x\"y", ""] {
        m.record_exchange(name, Outcome::Denied, Duration::from_millis(1));
    }
    let text = m.render().unwrap();
    assert_eq!(
        value(
            &text,
            "tokenmint_exchanges_total{broker=\"unknown\",outcome=\"denied\"}"
        )
        .as_deref(),
        Some("4"),
        "{text}"
    );
    assert!(!text.contains("attacker-chosen"), "{text}");
    assert!(!text.contains("no-such-broker"), "{text}");
    let series = text
        .lines()
        .filter(|l| l.starts_with("tokenmint_exchanges_total{"))
        .count();
    assert_eq!(series, 3 * Outcome::ALL.len(), "{text}");
}

#[test]
fn github_calls_and_rate_limit_are_rendered() {
    let github = GithubMetrics::default();
    let m = metrics(github.clone());
    github.record_call(Call::InstallationToken, CallResult::Status(201));
    github.record_call(Call::InstallationToken, CallResult::Status(201));
    github.record_call(Call::RepositoryInstallation, CallResult::Status(404));
    github.record_call(Call::TokenRevocation, CallResult::Timeout);
    github.record_call(Call::TokenRevocation, CallResult::Error);
    github.set_rate_limit_remaining(4998);
    let text = m.render().unwrap();
    let calls = |endpoint: &str, status: &str| {
        value(
            &text,
            &format!("tokenmint_github_calls_total{{endpoint=\"{endpoint}\",status=\"{status}\"}}"),
        )
    };
    assert_eq!(calls("installation-token", "201").as_deref(), Some("2"));
    assert_eq!(
        calls("repository-installation", "404").as_deref(),
        Some("1")
    );
    assert_eq!(calls("token-revocation", "timeout").as_deref(), Some("1"));
    assert_eq!(calls("token-revocation", "error").as_deref(), Some("1"));
    assert_eq!(
        value(&text, "tokenmint_github_rate_limit_remaining").as_deref(),
        Some("4998"),
        "{text}"
    );
    assert!(text.contains("# TYPE tokenmint_github_rate_limit_remaining gauge"));
}

#[test]
fn audit_write_latency_is_rendered() {
    let audit_write = audit_write_histogram();
    let m = Metrics::new(Sources {
        brokers: Vec::new(),
        github: GithubMetrics::default(),
        caches: Vec::new(),
        audit_write: audit_write.clone(),
    });
    audit_write.observe(0.002);
    let text = m.render().unwrap();
    assert_eq!(
        value(&text, "tokenmint_audit_write_duration_seconds_count").as_deref(),
        Some("1"),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "tokenmint_audit_write_duration_seconds_bucket{le=\"0.001\"}"
        )
        .as_deref(),
        Some("0")
    );
    assert_eq!(
        value(
            &text,
            "tokenmint_audit_write_duration_seconds_bucket{le=\"0.0025\"}"
        )
        .as_deref(),
        Some("1")
    );
}

#[test]
fn outcome_labels_are_distinct_and_classes_fixed() {
    let mut labels: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
    labels.sort_unstable();
    labels.dedup();
    assert_eq!(labels.len(), Outcome::ALL.len());
    for (i, o) in Outcome::ALL.iter().enumerate() {
        assert_eq!(o.index(), i, "ALL must be in declaration order");
        assert!(CLASSES.contains(&o.class()));
    }
    assert_eq!(Outcome::Allowed.class(), "allowed");
    assert_eq!(Outcome::Denied.class(), "refused");
    assert_eq!(Outcome::UpstreamError.class(), "failed");
}
