//! End to end: `tokenmint-bench --lambda` with tiny numbers against the real `bootstrap`, moto and the stand-ins, asserting the counts it reports (SSM, GitHub calls and App JWT signs per cold start and per warm invocation) and the model's.
//!
//! The `bootstrap` is the one next to the bench binary in the same target
//! directory (`cargo test --workspace` builds it; alone, run
//! `cargo build -p tokenmint-lambda` first), or `TOKENMINT_BENCH_BOOTSTRAP`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn bootstrap() -> PathBuf {
    let path = std::env::var_os("TOKENMINT_BENCH_BOOTSTRAP")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_BIN_EXE_tokenmint-bench")).with_file_name("bootstrap")
        });
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build -p tokenmint-lambda` first (or set TOKENMINT_BENCH_BOOTSTRAP)",
        path.display()
    );
    path
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn lambda_mode_reports_the_counts_of_a_real_run() {
    let bin = bootstrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tokenmint-bench"))
        .args(["--lambda", "--bootstrap-bin"])
        .arg(&bin)
        .args([
            "--cold-starts",
            "2",
            "--invocations",
            "5",
            "--model-reps",
            "3",
            "--json",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tokenmint-bench failed:\n{stderr}");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();

    // The binary's size is the file's.
    assert_eq!(
        r["binary"]["bytes"],
        std::fs::metadata(&bin).unwrap().len(),
        "{r}"
    );

    // Every cold start: one SSM read, installation lookup + mint, one App JWT.
    let cold = &r["cold"];
    assert_eq!(cold["count"], 2);
    let starts = cold["starts"].as_array().unwrap();
    assert_eq!(starts.len(), 2);
    for start in starts.iter().chain([&r["warm"]["first_invocation"]]) {
        assert_eq!(start["ssm_calls"], 1, "{start}");
        assert_eq!(start["github_calls"], 2, "{start}");
        assert_eq!(start["app_jwt_signs"], 1, "{start}");
        let total = f(&start["spawn_to_response_ms"]);
        assert!(total > 0.0, "{start}");
        assert!(
            (f(&start["init_ms"]) + f(&start["first_invocation_ms"]) - total).abs() < 0.01,
            "{start}"
        );
        assert!(f(&start["cpu_ms"]) > 0.0, "{start}");
        assert!(f(&start["peak_rss_mib"]) > 1.0, "{start}");
    }

    // Warm: credentials, installation and App JWT are cached, so one GitHub call each.
    let warm = &r["warm"];
    assert_eq!(warm["invocations"], 5);
    assert_eq!(warm["ssm_calls"], 0, "{warm}");
    assert_eq!(warm["github_calls"], 5, "{warm}");
    assert_eq!(warm["app_jwt_signs"], 0, "{warm}");
    assert_eq!(f(&warm["github_calls_per_invocation"]), 1.0);
    assert_eq!(f(&warm["ssm_calls_per_invocation"]), 0.0);
    assert_eq!(warm["crossed_credentials_ttl"], false);
    assert!(f(&warm["latency_ms"]["p50"]) > 0.0, "{warm}");
    assert!(f(&warm["peak_rss_mib"]) > 1.0, "{warm}");

    // The model of the original: one SSM call and two GitHub calls per step, each counted.
    let model = &r["original_model"];
    assert_eq!(model["ssm_get_parameters"]["reps"], 3);
    assert_eq!(f(&model["ssm_get_parameters"]["calls_per_step"]), 1.0);
    assert_eq!(f(&model["github_lookup_and_mint"]["calls_per_step"]), 2.0);
    assert_eq!(f(&model["rsa_sign"]["calls_per_step"]), 0.0);
    assert!(f(&model["rsa_sign"]["cpu_ms_per_step"]) > 0.0, "{model}");
    let sum = f(&model["ssm_get_parameters"]["latency_ms"]["p50"])
        + f(&model["rsa_sign"]["latency_ms"]["p50"])
        + f(&model["github_lookup_and_mint"]["latency_ms"]["p50"]);
    assert!((f(&model["sum_latency_p50_ms"]) - sum).abs() < 1e-9);
}
