//! SARIF 2.1.0 output for GitHub code scanning: every rule in the driver, one result per finding, located by file and line.

use super::{Location, Report, RULES};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The SARIF schema URL GitHub code scanning documents.
const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";
/// Where the tool is described (the project repository).
const INFORMATION_URI: &str = "https://github.com/tokenmint/tokenmint";

/// Renders `report` as a SARIF 2.1.0 log with one run. The artifact URI is
/// the linted path as given (relative paths stay relative, `\` becomes
/// `/`), so it resolves against the repository root in code scanning.
pub fn to_sarif(report: &Report) -> Value {
    let rules: Vec<Value> = RULES
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "name": r.name,
                "shortDescription": {"text": r.summary},
                "fullDescription": {"text": r.description},
                "help": {
                    "text": format!("{}\n\nFix: {}", r.description, r.fix),
                    "markdown": format!("{}\n\n**Fix:** {}", r.description, r.fix),
                },
                "defaultConfiguration": {"level": r.severity.sarif_level()},
                "properties": {
                    "security-severity": r.severity.security_severity(),
                    "tags": ["security", "oidc", "trust-policy"],
                    "precision": "high",
                    "problem.severity": match r.severity.sarif_level() {
                        "error" => "error",
                        "warning" => "warning",
                        _ => "recommendation",
                    },
                },
            })
        })
        .collect();
    let results: Vec<Value> = report
        .findings
        .iter()
        .map(|f| {
            let rule_index = RULES.iter().position(|r| r.id == f.rule_id).unwrap_or(0);
            let logical = match &f.location {
                Location::Broker { broker, claim } => match claim {
                    Some(c) => format!("broker.{broker}.{c}"),
                    None => format!("broker.{broker}"),
                },
                Location::Statement { index, key, .. } => match key {
                    Some(k) => format!("Statement[{index}].{k}"),
                    None => format!("Statement[{index}]"),
                },
                Location::BrokerStatement {
                    broker, index, key, ..
                } => match key {
                    Some(k) => format!("broker.{broker}.trust_policy_file.Statement[{index}].{k}"),
                    None => format!("broker.{broker}.trust_policy_file.Statement[{index}]"),
                },
                Location::RoleStatement {
                    role, index, key, ..
                } => match key {
                    Some(k) => format!("role.{role}.trust_policy_file.Statement[{index}].{k}"),
                    None => format!("role.{role}.trust_policy_file.Statement[{index}]"),
                },
            };
            let uri = artifact_uri(&f.file_or(&report.path).display().to_string());
            let fingerprint = hex::encode(Sha256::digest(
                format!("{}\n{}\n{}", f.rule_id, logical, f.message).as_bytes(),
            ));
            json!({
                "ruleId": f.rule_id,
                "ruleIndex": rule_index,
                "level": f.severity.sarif_level(),
                "message": {"text": format!("{}: {}. Fix: {}", f.location, f.message, f.fix)},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": uri},
                        "region": {"startLine": f.line.max(1)},
                    },
                    "logicalLocations": [{"fullyQualifiedName": logical}],
                }],
                "partialFingerprints": {"tokenmintFinding/v1": fingerprint},
            })
        })
        .collect();
    json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "tokenmint",
                "informationUri": INFORMATION_URI,
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": results,
        }],
    })
}

/// A URI reference for a path: `/` separators, and characters outside
/// RFC 3986's unreserved set and `/` percent-encoded. An absolute path
/// becomes a `file://` URI.
fn artifact_uri(path: &str) -> String {
    let path = path.replace('\\', "/");
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.starts_with('/') {
        format!("file://{out}")
    } else {
        out
    }
}
