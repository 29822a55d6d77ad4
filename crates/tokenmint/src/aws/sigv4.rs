//! AWS Signature Version 4 for the few JSON API calls tokenmint makes (SSM, KMS): canonical request, string to sign, derived key, `Authorization` header.
//!
//! Only what those calls need: the caller passes the path and query already
//! in canonical (URI-encoded, sorted) form. Checked against the worked
//! example in AWS's SigV4 documentation. The canonical request, string to
//! sign and key derivation are shared with the STS endpoint's verifier
//! ([`crate::sts`]), so signer and verifier cannot disagree.

use super::AwsCredentials;
use ring::hmac;
use secrecy::ExposeSecret as _;
use sha2::{Digest as _, Sha256};
use time::macros::format_description;
use time::OffsetDateTime;

/// One request to sign.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// The `Host` header value (with the port when it is not the scheme's default).
    pub host: &'a str,
    /// The canonical URI path, e.g. `/`.
    pub path: &'a str,
    /// The canonical query string (sorted, encoded), empty when none.
    pub query: &'a str,
    /// Headers to sign besides `host`, `x-amz-date` and `x-amz-security-token`; names in lowercase.
    pub headers: &'a [(&'a str, &'a str)],
    /// The request body.
    pub body: &'a [u8],
}

/// The only signing algorithm, in `Authorization` headers and strings to sign.
pub(crate) const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The `X-Amz-Date` format, `YYYYMMDDTHHMMSSZ`.
pub(crate) const AMZ_DATE: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");

/// The headers to add to the request: `x-amz-date`, `authorization`, and
/// `x-amz-security-token` for temporary credentials.
pub fn sign(
    req: &Request<'_>,
    credentials: &AwsCredentials,
    region: &str,
    service: &str,
    now: OffsetDateTime,
) -> Vec<(&'static str, String)> {
    let now = now.to_offset(time::UtcOffset::UTC);
    let amz_date = now.format(AMZ_DATE).unwrap_or_default();
    let day = amz_date.get(..8).unwrap_or_default().to_owned();

    // Canonical headers: lowercase names, trimmed values with inner runs of
    // spaces collapsed, sorted by name.
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), collapse(v)))
        .collect();
    headers.push(("host".into(), req.host.to_owned()));
    headers.push(("x-amz-date".into(), amz_date.clone()));
    if let Some(token) = credentials.session_token() {
        headers.push(("x-amz-security-token".into(), token.to_owned()));
    }
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");

    let canonical = canonical_request(
        req.method,
        req.path,
        req.query,
        &canonical_headers,
        &signed_headers,
        req.body,
    );
    let scope = format!("{day}/{region}/{service}/aws4_request");
    let to_sign = string_to_sign(&amz_date, &scope, &canonical);
    let key = signing_key(
        credentials.secret_access_key.expose_secret(),
        &day,
        region,
        service,
    );
    let signature = hex::encode(hmac::sign(&key, to_sign.as_bytes()));

    let mut out = vec![
        ("x-amz-date", amz_date),
        (
            "authorization",
            format!(
                "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
                credentials.access_key_id
            ),
        ),
    ];
    if let Some(token) = credentials.session_token() {
        out.push(("x-amz-security-token", token.to_owned()));
    }
    out
}

/// The canonical request: `METHOD \n path \n query \n canonical headers
/// (each `name:value\n`) \n signed header names \n hex(SHA-256(body))`.
/// `path` and `query` must already be in canonical form.
pub(crate) fn canonical_request(
    method: &str,
    path: &str,
    query: &str,
    canonical_headers: &str,
    signed_headers: &str,
    body: &[u8],
) -> String {
    format!(
        "{method}\n{path}\n{query}\n{canonical_headers}\n{signed_headers}\n{}",
        hex::encode(Sha256::digest(body))
    )
}

/// The string to sign: the algorithm, `X-Amz-Date`, the credential scope
/// and the hash of the canonical request.
pub(crate) fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

/// The derived signing key, `HMAC("AWS4"+secret, day) → region → service →
/// "aws4_request"`.
pub(crate) fn signing_key(secret: &str, day: &str, region: &str, service: &str) -> hmac::Key {
    let step = |key: &[u8], data: &str| {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
    };
    let mut key = step(format!("AWS4{secret}").as_bytes(), day);
    for part in [region, service, "aws4_request"] {
        key = step(key.as_ref(), part);
    }
    hmac::Key::new(hmac::HMAC_SHA256, key.as_ref())
}

/// Trims a header value and collapses inner runs of whitespace to one space.
pub(crate) fn collapse(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;
    use time::macros::datetime;

    /// AWS's worked example ("Signature Version 4 signing process", IAM ListUsers).
    #[test]
    fn matches_the_aws_documentation_example() {
        let creds = AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: SecretString::from("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            session_token: None,
        };
        let headers = sign(
            &Request {
                method: "GET",
                host: "iam.amazonaws.com",
                path: "/",
                query: "Action=ListUsers&Version=2010-05-08",
                headers: &[(
                    "content-type",
                    "application/x-www-form-urlencoded; charset=utf-8",
                )],
                body: b"",
            },
            &creds,
            "us-east-1",
            "iam",
            datetime!(2015-08-30 12:36:00 UTC),
        );
        assert_eq!(headers[0], ("x-amz-date", "20150830T123600Z".to_owned()));
        assert_eq!(
            headers[1].1,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
        assert_eq!(headers.len(), 2);
    }

    #[test]
    fn session_token_is_signed_and_sent() {
        let creds = AwsCredentials {
            access_key_id: "AKID".into(),
            secret_access_key: SecretString::from("s"),
            session_token: Some(SecretString::from("tok")),
        };
        let headers = sign(
            &Request {
                method: "POST",
                host: "ssm.eu-west-1.amazonaws.com",
                path: "/",
                query: "",
                headers: &[],
                body: b"{}",
            },
            &creds,
            "eu-west-1",
            "ssm",
            datetime!(2026-01-01 00:00:00 UTC),
        );
        assert!(headers[1]
            .1
            .contains("SignedHeaders=host;x-amz-date;x-amz-security-token,"));
        assert_eq!(headers[2], ("x-amz-security-token", "tok".to_owned()));
    }
}
