//! AWS Signature Version 4, verifier side: parse the `Authorization` header, rebuild the canonical request from what was received, and compare signatures in constant time.
//!
//! Only the header form (`Authorization: AWS4-HMAC-SHA256 Credential=…,
//! SignedHeaders=…, Signature=…`) is accepted, not presigned URLs. The
//! canonical request follows AWS's rules for services other than S3:
//!
//! ```text
//! METHOD \n URI-encoded path (each byte outside A-Za-z0-9-_.~/ as %XX) \n
//! sorted query (decoded, then re-encoded) \n
//! lowercase-name:trimmed-value per signed header, sorted \n \n
//! signed header names joined by ';' \n hex(SHA-256(body))
//! ```
//!
//! The string to sign is `AWS4-HMAC-SHA256 \n X-Amz-Date \n scope \n
//! hex(SHA-256(canonical request))`, signed with the key chain
//! `HMAC("AWS4"+secret, date) → region → service → "aws4_request"`.

use crate::aws::sigv4::{self as shared, collapse, ALGORITHM, AMZ_DATE};
use http::HeaderMap;
use ring::hmac;
use time::OffsetDateTime;

/// How far `X-Amz-Date` may be from `now`, either way.
pub(crate) const MAX_SKEW: time::Duration = time::Duration::minutes(5);

/// A parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Authorization {
    /// The access key id from the credential scope.
    pub(crate) access_key_id: String,
    /// `YYYYMMDD`.
    pub(crate) date: String,
    /// The region, e.g. `us-east-1`.
    pub(crate) region: String,
    /// The service, e.g. `sts`.
    pub(crate) service: String,
    /// Signed header names, lowercase, as listed.
    pub(crate) signed_headers: Vec<String>,
    /// The signature bytes.
    pub(crate) signature: Vec<u8>,
}

/// Why a signature was not accepted. The HTTP layer of the protocol maps
/// these to AWS error codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SigV4Error {
    /// The `Authorization` header is not a well-formed SigV4 header.
    #[error("{0}")]
    Malformed(String),
    /// The request time is missing, malformed or too far from now.
    #[error("{0}")]
    Time(String),
    /// The signature does not match the request.
    #[error("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.")]
    Mismatch,
}

impl Authorization {
    /// Parses `AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request, SignedHeaders=a;b, Signature=HEX`.
    pub(crate) fn parse(value: &str) -> Result<Self, SigV4Error> {
        let bad = |m: &str| SigV4Error::Malformed(format!("Authorization header: {m}"));
        let rest = value
            .strip_prefix(ALGORITHM)
            .and_then(|r| r.strip_prefix(' '))
            .ok_or_else(|| bad("only AWS4-HMAC-SHA256 is supported"))?;
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let (key, val) = part
                .trim()
                .split_once('=')
                .ok_or_else(|| bad("expected Credential=, SignedHeaders= and Signature="))?;
            let slot = match key {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed,
                "Signature" => &mut signature,
                _ => return Err(bad("unknown component")),
            };
            if slot.replace(val).is_some() {
                return Err(bad("a component appears twice"));
            }
        }
        let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature)
        else {
            return Err(bad(
                "Credential, SignedHeaders and Signature are all required",
            ));
        };
        let scope: Vec<&str> = credential.split('/').collect();
        let [akid, date, region, service, terminator] = scope[..] else {
            return Err(bad(
                "Credential must be AKID/YYYYMMDD/REGION/SERVICE/aws4_request",
            ));
        };
        if akid.is_empty()
            || date.len() != 8
            || !date.bytes().all(|b| b.is_ascii_digit())
            || region.is_empty()
            || service.is_empty()
            || terminator != "aws4_request"
        {
            return Err(bad(
                "Credential must be AKID/YYYYMMDD/REGION/SERVICE/aws4_request",
            ));
        }
        let signed_headers: Vec<String> = signed.split(';').map(str::to_owned).collect();
        if signed_headers
            .iter()
            .any(|h| h.is_empty() || h.bytes().any(|b| b.is_ascii_uppercase()))
        {
            return Err(bad(
                "SignedHeaders must be lowercase names separated by ';'",
            ));
        }
        let signature = hex::decode(signature)
            .ok()
            .filter(|s| s.len() == 32)
            .ok_or_else(|| bad("Signature must be 64 hex digits"))?;
        Ok(Self {
            access_key_id: akid.to_owned(),
            date: date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
            signed_headers,
            signature,
        })
    }

    /// The credential scope, `DATE/REGION/SERVICE/aws4_request`.
    pub(crate) fn scope(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }

    /// Whether `name` (lowercase) is among the signed headers.
    pub(crate) fn signs(&self, name: &str) -> bool {
        self.signed_headers.iter().any(|h| h == name)
    }
}

/// The parts of a received request that the signature covers.
#[derive(Debug)]
pub(crate) struct Received<'a> {
    /// `GET`, `POST`, …
    pub(crate) method: &'a str,
    /// The raw path, as sent.
    pub(crate) path: &'a str,
    /// The raw query string, without `?` (empty if none).
    pub(crate) query: &'a str,
    /// All headers.
    pub(crate) headers: &'a HeaderMap,
    /// The body bytes.
    pub(crate) body: &'a [u8],
}

/// Checks the `X-Amz-Date` header against `now` and the credential date,
/// and returns its value.
pub(crate) fn request_time<'a>(
    auth: &Authorization,
    headers: &'a HeaderMap,
    now: OffsetDateTime,
) -> Result<&'a str, SigV4Error> {
    let value = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            SigV4Error::Time("the request has no X-Amz-Date header; sign it with SigV4".into())
        })?;
    let at = time::PrimitiveDateTime::parse(value, AMZ_DATE)
        .map_err(|_| SigV4Error::Time(format!("X-Amz-Date {value:?} is not YYYYMMDDTHHMMSSZ")))?
        .assume_utc();
    if !value.starts_with(&auth.date) {
        return Err(SigV4Error::Malformed(format!(
            "the credential date {} is not the date of X-Amz-Date {value}",
            auth.date
        )));
    }
    if (at - now).abs() > MAX_SKEW {
        return Err(SigV4Error::Time(format!(
            "Signature expired or not yet valid: X-Amz-Date {value} is more than 5 minutes from the server's time; check the clock"
        )));
    }
    Ok(value)
}

/// The canonical request for `req` under `auth`'s signed headers.
pub(crate) fn canonical_request(
    req: &Received<'_>,
    auth: &Authorization,
) -> Result<String, SigV4Error> {
    let mut names = auth.signed_headers.clone();
    names.sort();
    names.dedup();
    let mut headers = String::new();
    for name in &names {
        let values: Vec<String> = req
            .headers
            .get_all(name.as_str())
            .iter()
            .map(|v| collapse(&String::from_utf8_lossy(v.as_bytes())))
            .collect();
        if values.is_empty() {
            return Err(SigV4Error::Malformed(format!(
                "signed header {name:?} is not in the request"
            )));
        }
        headers.push_str(name);
        headers.push(':');
        headers.push_str(&values.join(","));
        headers.push('\n');
    }
    Ok(shared::canonical_request(
        req.method,
        &uri_encode(req.path, true),
        &canonical_query(req.query),
        &headers,
        &names.join(";"),
        req.body,
    ))
}

/// The string to sign for a canonical request.
pub(crate) fn string_to_sign(canonical: &str, amz_date: &str, auth: &Authorization) -> String {
    shared::string_to_sign(amz_date, &auth.scope(), canonical)
}

/// The signing key for `secret` and `auth`'s scope.
pub(crate) fn signing_key(secret: &str, auth: &Authorization) -> hmac::Key {
    shared::signing_key(secret, &auth.date, &auth.region, &auth.service)
}

/// Verifies `auth.signature` over `req` with `secret`, with the request time
/// checked against `now`. The comparison is constant-time.
pub(crate) fn verify(
    req: &Received<'_>,
    auth: &Authorization,
    secret: &str,
    now: OffsetDateTime,
) -> Result<(), SigV4Error> {
    for required in ["host", "x-amz-date"] {
        if !auth.signs(required) {
            return Err(SigV4Error::Malformed(format!(
                "SignedHeaders must include {required}"
            )));
        }
    }
    let amz_date = request_time(auth, req.headers, now)?;
    let canonical = canonical_request(req, auth)?;
    let to_sign = string_to_sign(&canonical, amz_date, auth);
    hmac::verify(
        &signing_key(secret, auth),
        to_sign.as_bytes(),
        &auth.signature,
    )
    .map_err(|_| SigV4Error::Mismatch)
}

/// AWS URI encoding: every byte outside `A-Za-z0-9-_.~` (and `/` when
/// `keep_slash`) as `%XX`, uppercase hex.
fn uri_encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The canonical query string: pairs decoded, re-encoded, sorted.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (uri_encode(&k, false), uri_encode(&v, false)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use sha2::{Digest as _, Sha256};

    /// AWS's documented example (IAM `ListUsers`, "Create a signed AWS API
    /// request" in the IAM User Guide; the same request as the SigV4 test
    /// suite's credentials): secret `wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY`.
    const EXAMPLE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const EXAMPLE_SIGNATURE: &str =
        "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";

    fn example_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("iam.amazonaws.com"));
        h.insert(
            "content-type",
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
        );
        h.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
        h
    }

    fn example_auth(signature: &str) -> Authorization {
        Authorization::parse(&format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature={signature}"
        ))
        .unwrap()
    }

    fn example_now() -> OffsetDateTime {
        time::macros::datetime!(2015-08-30 12:37:00 UTC)
    }

    #[test]
    fn aws_published_example_verifies() {
        let headers = example_headers();
        let req = Received {
            method: "GET",
            path: "/",
            query: "Action=ListUsers&Version=2010-05-08",
            headers: &headers,
            body: b"",
        };
        let auth = example_auth(EXAMPLE_SIGNATURE);
        let canonical = canonical_request(&req, &auth).unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(canonical.as_bytes())),
            "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59",
            "{canonical}"
        );
        verify(&req, &auth, EXAMPLE_SECRET, example_now()).unwrap();
        // The query order does not matter; its content does.
        let reordered = Received {
            query: "Version=2010-05-08&Action=ListUsers",
            ..req
        };
        verify(&reordered, &auth, EXAMPLE_SECRET, example_now()).unwrap();
    }

    fn sts_request(body: &'static [u8]) -> (HeaderMap, &'static [u8]) {
        let mut h = example_headers();
        h.insert("host", HeaderValue::from_static("127.0.0.1:8080"));
        h.insert(
            "x-amz-security-token",
            HeaderValue::from_static("tm1.abc.def"),
        );
        (h, body)
    }

    fn sign(req: &Received<'_>, secret: &str, auth: &mut Authorization) {
        let amz = req.headers.get("x-amz-date").unwrap().to_str().unwrap();
        let canonical = canonical_request(req, auth).unwrap();
        let tag = hmac::sign(
            &signing_key(secret, auth),
            string_to_sign(&canonical, amz, auth).as_bytes(),
        );
        auth.signature = tag.as_ref().to_vec();
    }

    #[test]
    fn good_tampered_wrong_secret_and_stale() {
        let (headers, body) = sts_request(b"Action=GetCallerIdentity&Version=2011-06-15");
        let req = Received {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body,
        };
        let mut auth = Authorization::parse(
            &format!("AWS4-HMAC-SHA256 Credential=ASIAXYZ/20150830/eu-west-1/sts/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature={}", "00".repeat(32)),
        )
        .unwrap();
        sign(&req, "secret-1", &mut auth);
        // Good.
        verify(&req, &auth, "secret-1", example_now()).unwrap();
        // Tampered body.
        let tampered = Received {
            body: b"Action=GetCallerIdentity&Version=2011-06-16",
            ..req
        };
        assert_eq!(
            verify(&tampered, &auth, "secret-1", example_now()),
            Err(SigV4Error::Mismatch)
        );
        // Tampered signed header.
        let mut other = headers.clone();
        other.insert(
            "x-amz-security-token",
            HeaderValue::from_static("tm1.abc.deg"),
        );
        let swapped = Received {
            headers: &other,
            ..req
        };
        assert_eq!(
            verify(&swapped, &auth, "secret-1", example_now()),
            Err(SigV4Error::Mismatch)
        );
        // Wrong secret.
        assert_eq!(
            verify(&req, &auth, "secret-2", example_now()),
            Err(SigV4Error::Mismatch)
        );
        // Stale and future dates (5 minutes is the limit).
        let stale = example_now() + time::Duration::minutes(6);
        assert!(matches!(
            verify(&req, &auth, "secret-1", stale),
            Err(SigV4Error::Time(_))
        ));
        let early = example_now() - time::Duration::minutes(7);
        assert!(matches!(
            verify(&req, &auth, "secret-1", early),
            Err(SigV4Error::Time(_))
        ));
        let edge = time::macros::datetime!(2015-08-30 12:41:00 UTC);
        verify(&req, &auth, "secret-1", edge).unwrap();
    }

    #[test]
    fn host_and_date_must_be_signed() {
        let (headers, body) = sts_request(b"Action=GetCallerIdentity&Version=2011-06-15");
        let req = Received {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body,
        };
        let mut auth = Authorization::parse(&format!(
            "AWS4-HMAC-SHA256 Credential=A/20150830/us-east-1/sts/aws4_request, SignedHeaders=x-amz-date, Signature={}",
            "00".repeat(32)
        ))
        .unwrap();
        sign(&req, "s", &mut auth);
        assert!(matches!(
            verify(&req, &auth, "s", example_now()),
            Err(SigV4Error::Malformed(_))
        ));
    }

    #[test]
    fn malformed_headers_are_refused() {
        let sig = "00".repeat(32);
        for bad in [
            String::new(),
            format!("AWS4-HMAC-SHA1 Credential=A/20150830/r/sts/aws4_request, SignedHeaders=host, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 Credential=A/20150830/r/sts/aws5_request, SignedHeaders=host, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 Credential=A/2015083/r/sts/aws4_request, SignedHeaders=host, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 Credential=A/20150830/r/sts/aws4_request, SignedHeaders=Host, Signature={sig}"),
            "AWS4-HMAC-SHA256 Credential=A/20150830/r/sts/aws4_request, SignedHeaders=host, Signature=abc".to_owned(),
            "AWS4-HMAC-SHA256 Credential=A/20150830/r/sts/aws4_request, SignedHeaders=host".to_owned(),
            format!("AWS4-HMAC-SHA256 Credential=A/20150830/r/sts/aws4_request, Credential=B/20150830/r/sts/aws4_request, SignedHeaders=host, Signature={sig}"),
        ] {
            assert!(Authorization::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn uri_encoding_follows_aws_rules() {
        assert_eq!(uri_encode("/a b/~x", true), "/a%20b/~x");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
        assert_eq!(canonical_query("b=2&a=x+y&a=%2A"), "a=%2A&a=x%20y&b=2");
    }

    /// The client side (`aws::sigv4::sign`, used for SSM and KMS) and this
    /// verifier share one canonical form: what one signs, the other accepts.
    #[test]
    fn the_signer_and_the_verifier_agree() {
        use crate::aws::sigv4::{sign, Request};
        let creds = crate::aws::AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: secrecy::SecretString::from(EXAMPLE_SECRET),
            session_token: Some(secrecy::SecretString::from("tm1.abc.def")),
        };
        let body = b"Action=GetCallerIdentity&Version=2011-06-15";
        let now = example_now();
        let added = sign(
            &Request {
                method: "POST",
                host: "127.0.0.1:8080",
                path: "/",
                query: "",
                headers: &[("content-type", "application/x-www-form-urlencoded")],
                body,
            },
            &creds,
            "us-east-1",
            "sts",
            now,
        );
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("127.0.0.1:8080"));
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let mut authorization = String::new();
        for (name, value) in added {
            if name == "authorization" {
                authorization = value.clone();
            }
            headers.insert(name, HeaderValue::from_str(&value).unwrap());
        }
        let auth = Authorization::parse(&authorization).unwrap();
        let req = Received {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body,
        };
        verify(&req, &auth, EXAMPLE_SECRET, now).unwrap();
        let tampered = Received {
            body: b"Action=GetCallerIdentity&Version=2011-06-16",
            ..req
        };
        assert_eq!(
            verify(&tampered, &auth, EXAMPLE_SECRET, now),
            Err(SigV4Error::Mismatch)
        );
    }
}
