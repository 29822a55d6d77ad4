//! The audit record: what one exchange decision looks like in the log, and its canonical JSON.
//!
//! By construction no field can hold a credential: a granted token appears only
//! as [`AuditGrant::token_sha256`], and [`prepare`] refuses anything in that
//! field that is not a 64-digit hex digest.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use time::OffsetDateTime;

use super::error::AuditError;
use crate::oidc::claim_text;

/// One decision of the exchange endpoint, as written to the audit log.
///
/// Field order is fixed (it is the JSON order, and the JSON is what the hash
/// chain covers). Optional fields serialize as `null` rather than being left
/// out, so every record has the same shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When the request arrived (UTC, RFC 3339 in JSON). [`AuditLog::append`](super::AuditLog::append)
    /// stores it in UTC with microsecond precision.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// The request id, to join the audit row with the server's logs.
    pub request_id: String,
    /// The broker as named in the request path (even if no such broker exists).
    pub broker: String,
    /// What was decided.
    pub decision: Decision,
    /// The HTTP status returned to the caller.
    pub status: u16,
    /// The error code returned to the caller, e.g. `access_denied`; `None` on allow.
    pub code: Option<String>,
    /// The precise reason for the operator, e.g. which claim matched none of which patterns.
    pub reason: String,
    /// The token's `iss`, if the token could be read at all.
    pub issuer: Option<String>,
    /// The token's `sub`, if the token could be read at all.
    pub subject: Option<String>,
    /// The token's `aud` values.
    pub audience: Vec<String>,
    /// The CI claims that identify the job.
    pub claims: AuditClaims,
    /// The caller's network address as the server saw it.
    pub client_addr: Option<String>,
    /// The caller's `User-Agent` header.
    pub user_agent: Option<String>,
    /// What was granted; present only on allow.
    pub grant: Option<AuditGrant>,
    /// Time spent handling the request, in microseconds.
    pub latency_us: u64,
}

/// The outcome of a request. There is no default: "allow" must always be said out loud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// A token was minted and returned.
    Allow,
    /// The request was refused (bad token, policy mismatch, unknown broker, ...).
    Deny,
    /// The request failed for a reason that is not the caller's fault (GitHub down, ...).
    Error,
}

impl Decision {
    /// The lowercase name, as in JSON and in the `decision` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Error => "error",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "allow" => Some(Decision::Allow),
            "deny" => Some(Decision::Deny),
            "error" => Some(Decision::Error),
            _ => None,
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The CI claims worth keeping for forensics (GitHub Actions names). Each is
/// the claim's text (see [`claim_text`]) or `None` when absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditClaims {
    /// `repository`, e.g. `octo-org/octo-repo`.
    pub repository: Option<String>,
    /// `repository_id`: stable across renames, unlike `repository`.
    pub repository_id: Option<String>,
    /// `repository_owner_id`: stable across renames.
    pub repository_owner_id: Option<String>,
    /// `ref`, e.g. `refs/heads/main`.
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    /// `environment`, when the job targets one.
    pub environment: Option<String>,
    /// `workflow_ref`: the workflow file and ref that started the run.
    pub workflow_ref: Option<String>,
    /// `job_workflow_ref`: the (possibly reusable) workflow that ran the job.
    pub job_workflow_ref: Option<String>,
    /// `run_id`.
    pub run_id: Option<String>,
    /// `run_attempt`.
    pub run_attempt: Option<String>,
    /// `actor`: who triggered the run.
    pub actor: Option<String>,
    /// `event_name`, e.g. `push`.
    pub event_name: Option<String>,
    /// `jti`: the token's unique id, to spot replays.
    pub jti: Option<String>,
}

impl AuditClaims {
    /// Picks the audited claims out of a claim set (verified, or signed by a
    /// configured issuer but refused later), as escaped, bounded text.
    pub fn from_claims(claims: &serde_json::Map<String, serde_json::Value>) -> Self {
        // Claim values are caller-controlled: control characters are escaped
        // so `audit list` can print them safely, and length is bounded.
        let get = |name: &str| {
            claims
                .get(name)
                .and_then(claim_text)
                .map(|t| crate::text::printable(&t, 512))
        };
        Self {
            repository: get("repository"),
            repository_id: get("repository_id"),
            repository_owner_id: get("repository_owner_id"),
            git_ref: get("ref"),
            environment: get("environment"),
            workflow_ref: get("workflow_ref"),
            job_workflow_ref: get("job_workflow_ref"),
            run_id: get("run_id"),
            run_attempt: get("run_attempt"),
            actor: get("actor"),
            event_name: get("event_name"),
            jti: get("jti"),
        }
    }
}

/// What an allowed request received. The token itself is never stored; only
/// its SHA-256, so a leaked token can be traced to its request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditGrant {
    /// Lowercase hex SHA-256 of the token string; see [`token_sha256`].
    pub token_sha256: String,
    /// When GitHub says the token expires.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The GitHub App installation that minted it.
    pub installation_id: u64,
    /// The repositories the token is scoped to.
    pub repositories: Vec<String>,
    /// The permissions granted, by name (sorted, so the JSON is stable).
    pub permissions: BTreeMap<String, String>,
}

/// The value for [`AuditGrant::token_sha256`]: lowercase hex SHA-256 of the token's UTF-8 bytes.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Longest kept text for fields a caller can influence (claims, headers).
const MAX_FIELD_BYTES: usize = 2048;
/// Longest kept `reason`: it may list a broker's patterns.
const MAX_REASON_BYTES: usize = 8192;
/// Most kept `aud` values.
const MAX_AUDIENCES: usize = 32;
/// Appended to text that was cut short.
const TRUNCATED: &str = "…[truncated]";

/// A record ready for the writer: canonical JSON plus the plain column values.
#[derive(Debug, Clone)]
pub(crate) struct PreparedRecord {
    /// The canonical JSON that the hash covers.
    pub(crate) json: String,
    /// `time` as Unix microseconds, for the `time_us` column.
    pub(crate) time_us: i64,
    /// Copy of `broker` for its column.
    pub(crate) broker: String,
    /// Copy of `decision` for its column.
    pub(crate) decision: Decision,
}

/// Normalizes a record and serializes it canonically:
///
/// 1. `time` (and `grant.expires_at`) become UTC with microsecond precision,
///    so the JSON and the `time_us` column say exactly the same thing.
/// 2. Text a caller can influence is capped (claims, headers, `reason`,
///    `aud`), so one request cannot bloat the log.
/// 3. `grant.token_sha256` must be 64 hex digits: anything else might be the
///    token itself, so the record is refused rather than stored.
/// 4. The record is serialized with serde_json in struct field order.
pub(crate) fn prepare(mut record: AuditRecord) -> Result<PreparedRecord, AuditError> {
    // 1. Time normalization.
    record.time = to_utc_micros(record.time);
    if let Some(grant) = record.grant.as_mut() {
        grant.expires_at = to_utc_micros(grant.expires_at);
    }
    let time_us = unix_micros(record.time).ok_or_else(|| AuditError::InvalidRecord {
        request_id: record.request_id.clone(),
        reason: "its time is outside the range a 64-bit microsecond count can hold".to_owned(),
    })?;

    // 2. Caps.
    clamp_all(&mut record);

    // 3. No token in the digest field.
    if let Some(grant) = &record.grant {
        let digest = &grant.token_sha256;
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AuditError::InvalidRecord {
                request_id: record.request_id.clone(),
                reason: "grant.token_sha256 is not a 64-digit hex SHA-256 (pass audit::token_sha256(&token), never the token)".to_owned(),
            });
        }
    }
    if let Some(grant) = record.grant.as_mut() {
        grant.token_sha256.make_ascii_lowercase();
    }

    // 4. Canonical JSON.
    let json = serde_json::to_string(&record).map_err(|source| AuditError::Encode {
        request_id: record.request_id.clone(),
        source,
    })?;
    Ok(PreparedRecord {
        json,
        time_us,
        broker: record.broker,
        decision: record.decision,
    })
}

/// `t` in UTC, with nanoseconds cut to whole microseconds.
fn to_utc_micros(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(time::UtcOffset::UTC);
    let micros_ns = t.nanosecond() / 1000 * 1000;
    // Always in range: micros_ns <= nanosecond() < 1e9.
    t.replace_nanosecond(micros_ns).unwrap_or(t)
}

/// Microseconds since the Unix epoch, if they fit in an `i64`.
pub(crate) fn unix_micros(t: OffsetDateTime) -> Option<i64> {
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1000)).ok()
}

/// Microseconds since the Unix epoch, clamped to the `i64` range (for filters).
pub(crate) fn unix_micros_saturating(t: OffsetDateTime) -> i64 {
    let micros = t.unix_timestamp_nanos().div_euclid(1000);
    i64::try_from(micros).unwrap_or(if micros < 0 { i64::MIN } else { i64::MAX })
}

fn clamp_all(r: &mut AuditRecord) {
    clamp(&mut r.request_id, MAX_FIELD_BYTES);
    clamp(&mut r.broker, MAX_FIELD_BYTES);
    clamp_opt(&mut r.code, MAX_FIELD_BYTES);
    clamp(&mut r.reason, MAX_REASON_BYTES);
    clamp_opt(&mut r.issuer, MAX_FIELD_BYTES);
    clamp_opt(&mut r.subject, MAX_FIELD_BYTES);
    if r.audience.len() > MAX_AUDIENCES {
        let dropped = r.audience.len() - MAX_AUDIENCES + 1;
        r.audience.truncate(MAX_AUDIENCES - 1);
        r.audience.push(format!("…[{dropped} more]"));
    }
    for aud in &mut r.audience {
        clamp(aud, MAX_FIELD_BYTES);
    }
    let c = &mut r.claims;
    for field in [
        &mut c.repository,
        &mut c.repository_id,
        &mut c.repository_owner_id,
        &mut c.git_ref,
        &mut c.environment,
        &mut c.workflow_ref,
        &mut c.job_workflow_ref,
        &mut c.run_id,
        &mut c.run_attempt,
        &mut c.actor,
        &mut c.event_name,
        &mut c.jti,
    ] {
        clamp_opt(field, MAX_FIELD_BYTES);
    }
    clamp_opt(&mut r.client_addr, MAX_FIELD_BYTES);
    clamp_opt(&mut r.user_agent, MAX_FIELD_BYTES);
}

fn clamp_opt(s: &mut Option<String>, max: usize) {
    if let Some(s) = s {
        clamp(s, max);
    }
}

/// Cuts `s` to at most `max` bytes (on a character boundary) plus a marker.
fn clamp(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let end = crate::text::head(s, max).len();
    s.truncate(end);
    s.push_str(TRUNCATED);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::Value;
    use time::macros::datetime;

    /// A fully populated record, for tests across the audit module.
    pub(crate) fn sample(broker: &str, decision: Decision) -> AuditRecord {
        AuditRecord {
            time: datetime!(2025-03-01 12:00:00.123456789 +02:00),
            request_id: "req-1".to_owned(),
            broker: broker.to_owned(),
            decision,
            status: if decision == Decision::Allow { 200 } else { 403 },
            code: (decision != Decision::Allow).then(|| "access_denied".to_owned()),
            reason: "claim sub \"repo:o/r:ref:refs/heads/x\" matched none of [\"repo:o/r:ref:refs/heads/main\"]".to_owned(),
            issuer: Some("https://token.actions.githubusercontent.com".to_owned()),
            subject: Some("repo:o/r:ref:refs/heads/x".to_owned()),
            audience: vec!["tokenmint".to_owned()],
            claims: AuditClaims {
                repository: Some("o/r".to_owned()),
                git_ref: Some("refs/heads/x".to_owned()),
                run_id: Some("42".to_owned()),
                ..AuditClaims::default()
            },
            client_addr: Some("192.0.2.1:5555".to_owned()),
            user_agent: Some("actions/oidc-client".to_owned()),
            grant: (decision == Decision::Allow).then(|| AuditGrant {
                token_sha256: token_sha256("ghs_secret"),
                expires_at: datetime!(2025-03-01 13:00:00 UTC),
                installation_id: 7,
                repositories: vec!["r".to_owned()],
                permissions: BTreeMap::from([("contents".to_owned(), "read".to_owned())]),
            }),
            latency_us: 1234,
        }
    }

    fn assert_no_token_key(v: &Value, path: &str) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    assert_ne!(k, "token", "field named token at {path}");
                    assert!(
                        !k.contains("token") || k == "token_sha256",
                        "suspicious field {k} at {path}"
                    );
                    assert_no_token_key(child, &format!("{path}.{k}"));
                }
            }
            Value::Array(items) => items.iter().for_each(|i| assert_no_token_key(i, path)),
            _ => {}
        }
    }

    #[test]
    fn json_never_has_a_token_field_and_never_the_token() {
        let prepared = prepare(sample("b", Decision::Allow)).unwrap();
        let value: Value = serde_json::from_str(&prepared.json).unwrap();
        assert_no_token_key(&value, "$");
        assert!(!prepared.json.contains("ghs_secret"));
        assert_eq!(
            value["grant"]["token_sha256"].as_str().unwrap(),
            token_sha256("ghs_secret")
        );
    }

    #[test]
    fn canonical_shape_and_field_order() {
        let prepared = prepare(sample("b", Decision::Deny)).unwrap();
        let keys: Vec<String> = match serde_json::from_str::<Value>(&prepared.json).unwrap() {
            Value::Object(map) => map.keys().cloned().collect(),
            _ => panic!("not an object"),
        };
        // serde_json's Map is sorted unless preserve_order; check order on the text instead.
        assert_eq!(keys.len(), 15);
        let order = [
            "\"time\"",
            "\"request_id\"",
            "\"broker\"",
            "\"decision\"",
            "\"status\"",
            "\"code\"",
            "\"reason\"",
            "\"issuer\"",
            "\"subject\"",
            "\"audience\"",
            "\"claims\"",
            "\"client_addr\"",
            "\"user_agent\"",
            "\"grant\"",
            "\"latency_us\"",
        ];
        let positions: Vec<usize> = order
            .iter()
            .map(|k| prepared.json.find(k).unwrap())
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "{}",
            prepared.json
        );
        assert!(prepared.json.contains("\"decision\":\"deny\""));
        assert!(prepared.json.contains("\"ref\":\"refs/heads/x\""));
        assert!(prepared.json.contains("\"grant\":null"));
        // UTC, microseconds.
        assert!(
            prepared
                .json
                .contains("\"time\":\"2025-03-01T10:00:00.123456Z\""),
            "{}",
            prepared.json
        );
        assert_eq!(prepared.time_us, 1_740_823_200_123_456);
        let back: AuditRecord = serde_json::from_str(&prepared.json).unwrap();
        assert_eq!(back.time, datetime!(2025-03-01 10:00:00.123456 UTC));
    }

    #[test]
    fn refuses_a_token_in_the_digest_field() {
        let mut r = sample("b", Decision::Allow);
        if let Some(g) = r.grant.as_mut() {
            g.token_sha256 = "ghs_thisistherealtoken".to_owned();
        }
        let err = prepare(r).unwrap_err();
        assert!(matches!(err, AuditError::InvalidRecord { .. }));
        assert!(!err.to_string().contains("ghs_thisistherealtoken"));
    }

    #[test]
    fn caps_caller_controlled_text() {
        let mut r = sample("b", Decision::Deny);
        r.user_agent = Some("é".repeat(5000));
        r.audience = (0..100).map(|i| i.to_string()).collect();
        let p = prepare(r).unwrap();
        let back: AuditRecord = serde_json::from_str(&p.json).unwrap();
        let ua = back.user_agent.unwrap();
        assert!(ua.len() <= MAX_FIELD_BYTES + TRUNCATED.len());
        assert!(ua.ends_with(TRUNCATED));
        assert_eq!(back.audience.len(), MAX_AUDIENCES);
        assert_eq!(back.audience.last().unwrap(), "…[69 more]");
    }

    #[test]
    fn claims_are_picked_as_text() {
        let claims = crate::oidc::claims_for_tests(
            "gh",
            serde_json::json!({
                "iss": "https://token.actions.githubusercontent.com", "sub": "repo:o/r:ref:refs/heads/main",
                "aud": "tokenmint", "exp": 2, "iat": 1,
                "repository": "o/r", "ref": "refs/heads/main", "run_id": 42, "run_attempt": "1",
                "environment": null, "jti": "j-1"
            }),
        );
        let c = AuditClaims::from_claims(claims.as_map());
        assert_eq!(c.repository.as_deref(), Some("o/r"));
        assert_eq!(c.git_ref.as_deref(), Some("refs/heads/main"));
        assert_eq!(c.run_id.as_deref(), Some("42"));
        assert_eq!(c.run_attempt.as_deref(), Some("1"));
        assert_eq!(c.environment, None);
        assert_eq!(c.actor, None);
        assert_eq!(c.jti.as_deref(), Some("j-1"));
    }

    #[test]
    fn decision_names_round_trip() {
        for d in [Decision::Allow, Decision::Deny, Decision::Error] {
            assert_eq!(Decision::parse(d.as_str()), Some(d));
        }
        assert_eq!(Decision::parse("Allow"), None);
    }
}
