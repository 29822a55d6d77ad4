//! The AWS STS-compatible endpoint: `AssumeRoleWithWebIdentity` against configured `[[role]]` trust policies, and `GetCallerIdentity` for the credentials it issues.
//!
//! It exists so teams can test the exact trust policy they will deploy with
//! Terraform, locally and in CI, with real AWS SDKs and the AWS CLI (the moto
//! and LocalStack emulators accept any token, so they catch no policy
//! mistakes). It is off unless the config has a `[[role]]`; then `POST /`
//! on the shared router speaks STS's Query protocol.
//!
//! # Steps of `AssumeRoleWithWebIdentity`
//!
//! 1. The parameters, by AWS's rules (`params`): `ValidationError`.
//! 2. The web identity token, by [`crate::oidc::Verifier`] (the issuer's
//!    `audiences` play the role of the IAM provider's client ID list):
//!    `InvalidIdentityToken`, `ExpiredTokenException`, or
//!    `IDPCommunicationError` when the issuer's keys cannot be fetched.
//! 3. The role must be configured, and its trust policy must allow the
//!    request [`crate::iam`] builds from the claims for the provider
//!    `arn:aws:iam::<role account>:oidc-provider/<issuer URL without
//!    scheme>` (the same mapping as a broker's `trust_policy_file`). Unknown
//!    roles and denials are both `AccessDenied`.
//! 4. `DurationSeconds` must not exceed the role's `max_session_duration`:
//!    `ValidationError`.
//! 5. Credentials are minted (`credentials`) and the allow is audited; if
//!    the audit row cannot be written no credentials leave
//!    (`ServiceUnavailable`). Every refusal is audited too, with its reason.
//!
//! # `GetCallerIdentity`
//!
//! The request must carry a SigV4 `Authorization` header (`sigv4`) for
//! service `sts` (any region), an `X-Amz-Date` within 5 minutes of the
//! server's time, and a signed `X-Amz-Security-Token` that this server
//! sealed for the same access key id. The signature is checked with the
//! secret key derived again from the access key id; then the credentials must
//! not have expired (`ExpiredToken`).
//!
//! # What the credentials are
//!
//! tokenmint's own, not AWS's: AWS rejects them, and nothing but this
//! endpoint's `GetCallerIdentity` accepts them. They prove which role and
//! session a trust policy let in.

mod credentials;
mod error;
pub(crate) mod http;
mod params;
mod sigv4;
mod xml;

pub use error::{error_status, StsError};

use crate::audit::{token_sha256, AuditGrant, AuditRecord, Decision as AuditDecision};
use crate::config::{provider_host_path, StsKey};
use crate::exchange::Service;
use crate::iam::{IamDecision, WebIdentityRequest};
use crate::oidc::Rejection;
use crate::text::printable;
use ::http::HeaderMap;
use credentials::{Keys, Session};
use params::AssumeRoleParams;
use secrecy::{ExposeSecret as _, SecretString};
use std::collections::BTreeMap;
use std::time::Instant;
use time::OffsetDateTime;

/// The STS endpoint's state: the keys credentials derive from.
#[derive(Debug)]
pub struct Sts {
    keys: Keys,
}

impl Sts {
    /// The endpoint with credentials derived from `key`.
    pub fn new(key: &StsKey) -> Self {
        Self {
            keys: Keys::new(key),
        }
    }

    /// A fresh random key, for when `[sts] secret_file` is not set:
    /// credentials then stop verifying when the process exits.
    pub fn random_key() -> StsKey {
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
        StsKey::from_bytes(bytes)
    }
}

/// Issued credentials and what they were issued for.
pub(crate) struct Assumed {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: SecretString,
    pub(crate) session_token: SecretString,
    pub(crate) expiration: OffsetDateTime,
    pub(crate) subject: String,
    pub(crate) assumed_role_arn: String,
    pub(crate) assumed_role_id: String,
    pub(crate) provider: String,
    pub(crate) audience: String,
}

/// Who signed a `GetCallerIdentity` call.
pub(crate) struct Caller {
    pub(crate) arn: String,
    pub(crate) user_id: String,
    pub(crate) account: String,
}

/// Request facts for the audit row.
pub(crate) struct RequestMeta {
    pub(crate) request_id: String,
    pub(crate) client_addr: Option<String>,
    pub(crate) user_agent: Option<String>,
}

/// `arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION`.
fn assumed_role_arn(account: &str, role_name: &str, session: &str) -> String {
    format!("arn:aws:sts::{account}:assumed-role/{role_name}/{session}")
}

/// Runs `AssumeRoleWithWebIdentity` at `now`. Every call writes one audit row.
pub(crate) async fn assume_role_with_web_identity(
    service: &Service,
    sts: &Sts,
    req: &AssumeRoleParams,
    meta: &RequestMeta,
    now: OffsetDateTime,
) -> Result<Assumed, StsError> {
    let started = Instant::now();
    let mut record = base_record(meta, &req.role_arn, now);
    let outcome = assume_inner(service, sts, req, now, &mut record).await;
    record.latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    match outcome {
        Ok(assumed) => {
            record.decision = AuditDecision::Allow;
            record.status = 200;
            record.reason = format!(
                "assumed role {:?} as {:?} with access key {}",
                req.role_arn, assumed.assumed_role_arn, assumed.access_key_id
            );
            record.grant = Some(AuditGrant {
                token_sha256: token_sha256(assumed.session_token.expose_secret()),
                expires_at: assumed.expiration,
                installation_id: 0,
                repositories: vec![assumed.assumed_role_arn.clone()],
                permissions: BTreeMap::new(),
            });
            service
                .audit()
                .append(record)
                .await
                .map_err(StsError::AuditUnavailable)?;
            tracing::info!(role = %req.role_arn, access_key_id = %assumed.access_key_id, expires_at = %crate::clock::rfc3339(assumed.expiration), "assumed role");
            Ok(assumed)
        }
        Err(err) => {
            audit_refusal(service, record, &err).await;
            Err(err)
        }
    }
}

/// Audits an `AssumeRoleWithWebIdentity` request refused before its
/// parameters could be parsed (step 1), so that every such call has a row.
pub(crate) async fn audit_refused_parameters(
    service: &Service,
    meta: &RequestMeta,
    role_arn: &str,
    err: &StsError,
    now: OffsetDateTime,
) {
    audit_refusal(service, base_record(meta, role_arn, now), err).await;
}

/// Writes a refusal row; a failed write is logged (the caller is refused anyway).
async fn audit_refusal(service: &Service, mut record: AuditRecord, err: &StsError) {
    let (status, _, code) = error_status(err);
    record.decision = if status.is_server_error() {
        AuditDecision::Error
    } else {
        AuditDecision::Deny
    };
    record.status = status.as_u16();
    record.code = Some(code.to_owned());
    record.reason = err.to_string();
    tracing::info!(code, status = record.status, reason = %record.reason, "AssumeRoleWithWebIdentity refused");
    if let Err(e) = service.audit().append(record).await {
        tracing::error!(error = %e, "audit write failed for a refused AssumeRoleWithWebIdentity");
    }
}

/// The audit row of one `AssumeRoleWithWebIdentity` call, before its outcome;
/// `broker` is `sts:` + the requested role ARN.
fn base_record(meta: &RequestMeta, role_arn: &str, now: OffsetDateTime) -> AuditRecord {
    AuditRecord {
        time: now,
        request_id: meta.request_id.clone(),
        broker: format!("sts:{}", printable(role_arn, 2048)),
        decision: AuditDecision::Deny,
        status: 0,
        code: None,
        reason: String::new(),
        issuer: None,
        subject: None,
        audience: Vec::new(),
        claims: Default::default(),
        client_addr: meta.client_addr.clone(),
        user_agent: meta.user_agent.as_deref().map(|ua| printable(ua, 256)),
        grant: None,
        latency_us: 0,
    }
}

async fn assume_inner(
    service: &Service,
    sts: &Sts,
    req: &AssumeRoleParams,
    now: OffsetDateTime,
    record: &mut AuditRecord,
) -> Result<Assumed, StsError> {
    // 2. Verify the web identity token.
    let claims = match service
        .verifier()
        .verify(req.token.expose_secret(), now)
        .await
    {
        Ok(claims) => claims,
        Err(Rejection { error, signed }) => {
            if let Some((issuer, claims)) = signed {
                crate::exchange::fill_claims(record, &issuer, &claims);
            }
            return Err(error.into());
        }
    };
    crate::exchange::fill_claims(record, claims.issuer_name(), claims.as_map());

    // 3. The role and its trust policy.
    let role = service
        .config()
        .sts
        .roles
        .get(&req.role_arn)
        .ok_or_else(|| StsError::AccessDenied {
            reason: format!("no [[role]] has arn {:?}", printable(&req.role_arn, 256)),
        })?;
    let provider = provider_host_path(claims.iss());
    let request = WebIdentityRequest::from_claims(&provider, role.arn.account(), claims.as_map());
    if let IamDecision::Deny(denial) = role.policy.evaluate(&request) {
        return Err(StsError::AccessDenied {
            reason: format!("IAM trust policy {}: {denial}", role.file.display()),
        });
    }

    // 4. The duration, within the role's maximum.
    let duration = req.duration_for(role.max_session_duration)?;

    // 5. Mint.
    let expiration = time::Duration::try_from(duration)
        .ok()
        .and_then(|d| now.checked_add(d))
        .ok_or(StsError::Internal)?;
    let access_key_id = credentials::new_access_key_id();
    let assumed_role_arn = assumed_role_arn(role.arn.account(), role.arn.name(), &req.session_name);
    let role_id = credentials::role_id(role.arn.as_str());
    let subject = claims.sub().to_owned();
    let session_token = sts.keys.seal(&Session {
        akid: access_key_id.clone(),
        role: role.arn.as_str().to_owned(),
        session: req.session_name.clone(),
        sub: printable(&subject, 1024),
        exp: expiration.unix_timestamp(),
    });
    let accepted = service
        .config()
        .issuers
        .iter()
        .find(|i| i.name == claims.issuer_name())
        .map(|i| i.audiences.clone())
        .unwrap_or_default();
    let audience = claims
        .audiences()
        .into_iter()
        .find(|a| accepted.iter().any(|x| x == a))
        .unwrap_or_default()
        .to_owned();
    Ok(Assumed {
        secret_access_key: sts.keys.secret_access_key(&access_key_id),
        access_key_id,
        session_token,
        expiration,
        subject,
        assumed_role_id: format!("{role_id}:{}", req.session_name),
        assumed_role_arn,
        provider: claims.iss().to_owned(),
        audience,
    })
}

/// Runs `GetCallerIdentity` for a signed request at `now`.
pub(crate) fn get_caller_identity(
    sts: &Sts,
    received: &sigv4::Received<'_>,
    now: OffsetDateTime,
) -> Result<Caller, StsError> {
    let headers: &HeaderMap = received.headers;
    // 1. A well-formed Authorization header, scoped to sts.
    let mut values = headers.get_all(::http::header::AUTHORIZATION).iter();
    let value = match (values.next(), values.next()) {
        (None, _) => return Err(StsError::MissingAuthenticationToken),
        (Some(v), None) => v.to_str().map_err(|_| {
            StsError::IncompleteSignature("Authorization header is not ASCII".into())
        })?,
        (Some(_), Some(_)) => {
            return Err(StsError::IncompleteSignature(
                "send exactly one Authorization header".into(),
            ))
        }
    };
    let auth = sigv4::Authorization::parse(value)
        .map_err(|e| StsError::IncompleteSignature(e.to_string()))?;
    if auth.service != "sts" {
        return Err(StsError::SignatureDoesNotMatch(format!(
            "Credential should be scoped to correct service: 'sts', not {:?}",
            printable(&auth.service, 64)
        )));
    }
    // 2. The session token: present, signed, sealed by us for this key id.
    if !auth.signs("x-amz-security-token") {
        return Err(StsError::InvalidClientTokenId(
            "tokenmint credentials are session credentials; send and sign X-Amz-Security-Token",
        ));
    }
    let token = headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok())
        .ok_or(StsError::InvalidClientTokenId(
            "the X-Amz-Security-Token header is missing",
        ))?;
    let session = sts.keys.open(token).map_err(|_| {
        StsError::InvalidClientTokenId("the session token was not issued by this server")
    })?;
    if session.akid != auth.access_key_id {
        return Err(StsError::InvalidClientTokenId(
            "the session token belongs to another access key id",
        ));
    }
    // 3. The signature (and the request time) with the derived secret.
    let secret = sts.keys.secret_access_key(&session.akid);
    sigv4::verify(received, &auth, secret.expose_secret(), now).map_err(|e| match e {
        sigv4::SigV4Error::Malformed(m) => StsError::IncompleteSignature(m),
        sigv4::SigV4Error::Time(m) => StsError::SignatureDoesNotMatch(m),
        sigv4::SigV4Error::Mismatch => StsError::SignatureDoesNotMatch(e.to_string()),
    })?;
    // 4. Not expired.
    if now.unix_timestamp() >= session.exp {
        return Err(StsError::ExpiredToken);
    }
    let role = crate::config::RoleArn::parse(&session.role).map_err(|_| StsError::Internal)?;
    Ok(Caller {
        arn: assumed_role_arn(role.account(), role.name(), &session.session),
        user_id: format!(
            "{}:{}",
            credentials::role_id(role.as_str()),
            session.session
        ),
        account: role.account().to_owned(),
    })
}
