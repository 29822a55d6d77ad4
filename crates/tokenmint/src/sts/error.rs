//! Why an STS call failed, and [`error_status`]: the one place STS errors become AWS error codes and HTTP statuses.

use crate::audit::AuditError;
use crate::oidc::VerifyError;
use http::StatusCode;

/// Why an STS call failed. [`error_status`] maps each variant to AWS's code
/// and status; nothing else does.
#[derive(Debug, thiserror::Error)]
pub enum StsError {
    /// A parameter breaks AWS's rules (`ValidationError`, 400).
    #[error("{0}")]
    Validation(String),
    /// No such action, or the wrong `Version` (`InvalidAction`, 400).
    #[error("{0}")]
    InvalidAction(String),
    /// The web identity token failed verification (`InvalidIdentityToken`, 400).
    #[error("{0}")]
    InvalidIdentityToken(#[source] VerifyError),
    /// The web identity token has expired (`ExpiredTokenException`, 400).
    #[error("{0}")]
    ExpiredIdentityToken(#[source] VerifyError),
    /// The issuer's keys cannot be fetched (`IDPCommunicationError`, 400).
    #[error("{0}")]
    IdpCommunication(#[source] VerifyError),
    /// Unknown role, or its trust policy denies (`AccessDenied`, 403). The
    /// reason is for the audit log; callers see AWS's fixed message unless
    /// `[server] explain_denials` is on.
    #[error("{reason}")]
    AccessDenied {
        /// The precise reason.
        reason: String,
    },
    /// No `Authorization` header on a signed action (`MissingAuthenticationToken`, 403).
    #[error("Request is missing Authentication Token; sign GetCallerIdentity with SigV4")]
    MissingAuthenticationToken,
    /// The `Authorization` header is malformed (`IncompleteSignature`, 400).
    #[error("{0}")]
    IncompleteSignature(String),
    /// The access key id or session token is not one this server issued
    /// (`InvalidClientTokenId`, 403).
    #[error("The security token included in the request is invalid: {0}")]
    InvalidClientTokenId(&'static str),
    /// The signature, its scope or its time does not match (`SignatureDoesNotMatch`, 403).
    #[error("{0}")]
    SignatureDoesNotMatch(String),
    /// The credentials have expired (`ExpiredToken`, 400).
    #[error("The security token included in the request is expired; assume the role again")]
    ExpiredToken,
    /// The decision could not be audited, so no credentials were issued
    /// (`ServiceUnavailable`, 503).
    #[error("the audit store is unavailable, so no credentials were issued; retry shortly")]
    AuditUnavailable(#[source] AuditError),
    /// The request did not complete (`ServiceUnavailable`, 503).
    #[error("internal error; retry shortly")]
    Internal,
}

/// The AWS error `Type`, code and HTTP status for `err`. This is the only
/// place that decides them for the STS protocol.
pub fn error_status(err: &StsError) -> (StatusCode, &'static str, &'static str) {
    const SENDER: &str = "Sender";
    match err {
        StsError::Validation(_) => (StatusCode::BAD_REQUEST, SENDER, "ValidationError"),
        StsError::InvalidAction(_) => (StatusCode::BAD_REQUEST, SENDER, "InvalidAction"),
        StsError::InvalidIdentityToken(_) => {
            (StatusCode::BAD_REQUEST, SENDER, "InvalidIdentityToken")
        }
        StsError::ExpiredIdentityToken(_) => {
            (StatusCode::BAD_REQUEST, SENDER, "ExpiredTokenException")
        }
        StsError::IdpCommunication(_) => (StatusCode::BAD_REQUEST, SENDER, "IDPCommunicationError"),
        StsError::AccessDenied { .. } => (StatusCode::FORBIDDEN, SENDER, "AccessDenied"),
        StsError::MissingAuthenticationToken => {
            (StatusCode::FORBIDDEN, SENDER, "MissingAuthenticationToken")
        }
        StsError::IncompleteSignature(_) => {
            (StatusCode::BAD_REQUEST, SENDER, "IncompleteSignature")
        }
        StsError::InvalidClientTokenId(_) => {
            (StatusCode::FORBIDDEN, SENDER, "InvalidClientTokenId")
        }
        StsError::SignatureDoesNotMatch(_) => {
            (StatusCode::FORBIDDEN, SENDER, "SignatureDoesNotMatch")
        }
        StsError::ExpiredToken => (StatusCode::BAD_REQUEST, SENDER, "ExpiredToken"),
        StsError::AuditUnavailable(_) | StsError::Internal => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Receiver",
            "ServiceUnavailable",
        ),
    }
}

/// What the caller reads in `<Message>`. Denials carry AWS's fixed text
/// unless `explain_denials`; the precise reason is always audited.
pub(crate) fn error_message(err: &StsError, explain_denials: bool) -> String {
    match err {
        StsError::AccessDenied { reason } if explain_denials => {
            format!("Not authorized to perform sts:AssumeRoleWithWebIdentity: {reason}")
        }
        StsError::AccessDenied { .. } => {
            "Not authorized to perform sts:AssumeRoleWithWebIdentity".to_owned()
        }
        StsError::IdpCommunication(_) => {
            "Couldn't retrieve verification key from your identity provider; retry shortly"
                .to_owned()
        }
        other => other.to_string(),
    }
}

impl From<VerifyError> for StsError {
    fn from(err: VerifyError) -> Self {
        match err {
            VerifyError::Expired { .. } => Self::ExpiredIdentityToken(err),
            VerifyError::KeysUnavailable { .. } => Self::IdpCommunication(err),
            other => Self::InvalidIdentityToken(other),
        }
    }
}
