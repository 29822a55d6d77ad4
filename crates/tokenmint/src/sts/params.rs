//! Query-protocol parameters: the form body parsed once into a typed [`Call`], with AWS's parameter rules.

use super::StsError;
use crate::config::{DEFAULT_SESSION_DURATION, MAX_SESSION_DURATION};
use secrecy::SecretString;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The only API version STS has.
pub(crate) const VERSION: &str = "2011-06-15";
/// The shortest session `DurationSeconds` may ask for.
pub(crate) const MIN_DURATION: Duration = Duration::from_secs(900);

/// One parsed call.
#[derive(Debug)]
pub(crate) enum Call {
    /// `Action=AssumeRoleWithWebIdentity`.
    AssumeRoleWithWebIdentity(AssumeRoleParams),
    /// `Action=GetCallerIdentity`.
    GetCallerIdentity,
}

/// `AssumeRoleWithWebIdentity`'s parameters, checked against AWS's rules
/// except the role's own maximum duration (checked once the role is known).
pub(crate) struct AssumeRoleParams {
    /// `RoleArn`, 20 to 2048 characters.
    pub(crate) role_arn: String,
    /// `RoleSessionName`, `[\w+=,.@-]{2,64}`.
    pub(crate) session_name: String,
    /// `WebIdentityToken`, 4 to 20000 characters.
    pub(crate) token: SecretString,
    /// `DurationSeconds`, 900 to 43200; `None` means the default (3600).
    pub(crate) duration: Option<Duration>,
}

impl fmt::Debug for AssumeRoleParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssumeRoleParams")
            .field("role_arn", &self.role_arn)
            .field("session_name", &self.session_name)
            .field("token", &"REDACTED")
            .field("duration", &self.duration)
            .finish()
    }
}

impl AssumeRoleParams {
    /// The session length: `DurationSeconds`, or 3600 by default, which must
    /// not exceed `role_max` (AWS refuses rather than caps).
    pub(crate) fn duration_for(&self, role_max: Duration) -> Result<Duration, StsError> {
        match self.duration {
            Some(d) if d > role_max => Err(StsError::Validation(format!(
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role ({} seconds); ask for at most that",
                role_max.as_secs()
            ))),
            Some(d) => Ok(d),
            None => Ok(DEFAULT_SESSION_DURATION.min(role_max)),
        }
    }
}

/// Parses an `application/x-www-form-urlencoded` body. Parameter names are
/// case-sensitive; a repeated or unknown parameter is refused (fail closed:
/// a session policy that we silently dropped would mean less than it says).
pub(crate) fn parse(body: &[u8]) -> Result<Call, StsError> {
    let mut params = BTreeMap::new();
    for (key, value) in url::form_urlencoded::parse(body) {
        if params
            .insert(key.clone().into_owned(), value.into_owned())
            .is_some()
        {
            return Err(StsError::Validation(format!(
                "parameter {:?} appears more than once; send it once",
                crate::text::printable(&key, 64)
            )));
        }
    }
    let action = params
        .remove("Action")
        .ok_or_else(|| StsError::InvalidAction("the request has no Action parameter; send Action=AssumeRoleWithWebIdentity or Action=GetCallerIdentity".into()))?;
    let version = params.remove("Version");
    if version.as_deref() != Some(VERSION) {
        return Err(StsError::InvalidAction(format!(
            "Could not find operation {} for version {}; send Version={VERSION}",
            crate::text::printable(&action, 64),
            crate::text::printable(version.as_deref().unwrap_or("NO_VERSION_SPECIFIED"), 64),
        )));
    }
    let call = match action.as_str() {
        "AssumeRoleWithWebIdentity" => Call::AssumeRoleWithWebIdentity(assume_role(&mut params)?),
        "GetCallerIdentity" => Call::GetCallerIdentity,
        other => {
            return Err(StsError::InvalidAction(format!(
                "Could not find operation {} for version {VERSION}; tokenmint supports AssumeRoleWithWebIdentity and GetCallerIdentity",
                crate::text::printable(other, 64)
            )))
        }
    };
    if let Some(name) = params.keys().next() {
        let hint = if name == "Policy" || name.starts_with("PolicyArns.") {
            "session policies are not supported; the trust policy alone decides"
        } else {
            "remove it"
        };
        return Err(StsError::Validation(format!(
            "parameter {:?} is not supported for {action}; {hint}",
            crate::text::printable(name, 64)
        )));
    }
    Ok(call)
}

fn assume_role(params: &mut BTreeMap<String, String>) -> Result<AssumeRoleParams, StsError> {
    let mut required = |name: &str| {
        params.remove(name).ok_or_else(|| {
            StsError::Validation(format!("1 validation error detected: Value null at '{name}' failed to satisfy constraint: Member must not be null"))
        })
    };
    let role_arn = required("RoleArn")?;
    let session_name = required("RoleSessionName")?;
    // A token file written with `echo` ends in a newline, which SDKs that read
    // AWS_WEB_IDENTITY_TOKEN_FILE send as is. A compact JWT has no whitespace,
    // so trailing whitespace is dropped rather than failing the token as
    // malformed.
    let token = {
        let raw = required("WebIdentityToken")?;
        let kept = raw.trim_end_matches([' ', '\t', '\r', '\n']).len();
        let mut raw = raw;
        raw.truncate(kept);
        raw
    };
    let length = |name: &str, value: &str, min: usize, max: usize| {
        let n = value.chars().count();
        if (min..=max).contains(&n) {
            Ok(())
        } else {
            Err(StsError::Validation(format!(
                "1 validation error detected: Value at '{name}' failed to satisfy constraint: Member must have length between {min} and {max} (it has {n})"
            )))
        }
    };
    length("roleArn", &role_arn, 20, 2048)?;
    length("webIdentityToken", &token, 4, 20_000)?;
    length("roleSessionName", &session_name, 2, 64)?;
    if !session_name.chars().all(crate::config::is_role_char) {
        return Err(StsError::Validation(
            "1 validation error detected: Value at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*".into(),
        ));
    }
    let duration = params
        .remove("DurationSeconds")
        .map(|text| {
            text.parse::<u64>()
                .ok()
                .map(Duration::from_secs)
                .filter(|d| (MIN_DURATION..=MAX_SESSION_DURATION).contains(d))
                .ok_or_else(|| {
                    StsError::Validation(format!(
                        "1 validation error detected: Value {:?} at 'durationSeconds' failed to satisfy constraint: Member must be an integer between 900 and 43200",
                        crate::text::printable(&text, 32)
                    ))
                })
        })
        .transpose()?;
    Ok(AssumeRoleParams {
        role_arn,
        session_name,
        token: SecretString::from(token),
        duration,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:iam::123456789012:role/ci/deployer";

    fn body(extra: &str) -> String {
        format!("Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn={ARN}&WebIdentityToken=a.b.c{extra}")
    }

    fn assume(extra: &str) -> Result<AssumeRoleParams, StsError> {
        match parse(body(extra).as_bytes())? {
            Call::AssumeRoleWithWebIdentity(p) => Ok(p),
            Call::GetCallerIdentity => panic!("wrong call"),
        }
    }

    fn validation(r: Result<AssumeRoleParams, StsError>) -> String {
        match r {
            Err(StsError::Validation(m)) => m,
            other => panic!("expected ValidationError, got {other:?}"),
        }
    }

    #[test]
    fn good_request_parses() {
        let p = assume("&RoleSessionName=build%2B1%40ci&DurationSeconds=900").unwrap();
        assert_eq!(p.role_arn, ARN);
        assert_eq!(p.session_name, "build+1@ci");
        assert_eq!(p.duration, Some(Duration::from_secs(900)));
        assert!(!format!("{p:?}").contains("a.b.c"));
        assert!(matches!(
            parse(b"Action=GetCallerIdentity&Version=2011-06-15").unwrap(),
            Call::GetCallerIdentity
        ));
    }

    #[test]
    fn trailing_newline_of_a_token_file_is_dropped() {
        use secrecy::ExposeSecret as _;
        let body = format!("Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn={ARN}&WebIdentityToken=a.b.c%0D%0A%20&RoleSessionName=ok");
        let Call::AssumeRoleWithWebIdentity(p) = parse(body.as_bytes()).unwrap() else {
            panic!("wrong call");
        };
        assert_eq!(p.token.expose_secret(), "a.b.c");
        // Only trailing whitespace: a token with whitespace inside stays as
        // sent, and fails verification as malformed.
        let body = format!("Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn={ARN}&WebIdentityToken=a.b%0A.c&RoleSessionName=ok");
        let Call::AssumeRoleWithWebIdentity(p) = parse(body.as_bytes()).unwrap() else {
            panic!("wrong call");
        };
        assert_eq!(p.token.expose_secret(), "a.b\n.c");
    }

    #[test]
    fn session_name_rules() {
        assert!(assume("&RoleSessionName=ab").is_ok());
        assert!(assume(&format!("&RoleSessionName={}", "a".repeat(64))).is_ok());
        assert_eq!(
            assume("&RoleSessionName=a-_%2B%3D%2C.%409")
                .unwrap()
                .session_name,
            "a-_+=,.@9"
        );
        validation(assume("&RoleSessionName=a"));
        validation(assume(&format!("&RoleSessionName={}", "a".repeat(65))));
        validation(assume("&RoleSessionName=a%20b"));
        validation(assume("&RoleSessionName=a/b"));
        validation(assume("&RoleSessionName=a%3Ab"));
        validation(assume("&RoleSessionName=%C3%A9t%C3%A9"));
        validation(assume(""));
    }

    #[test]
    fn duration_rules() {
        let s = "&RoleSessionName=ok";
        assert_eq!(assume(s).unwrap().duration, None);
        assert!(assume(&format!("{s}&DurationSeconds=43200")).is_ok());
        for bad in ["899", "43201", "-1", "1e3", "", "3600.0"] {
            validation(assume(&format!("{s}&DurationSeconds={bad}")));
        }
        let p = assume(&format!("{s}&DurationSeconds=7200")).unwrap();
        assert_eq!(
            p.duration_for(Duration::from_secs(7200)).unwrap().as_secs(),
            7200
        );
        assert!(matches!(
            p.duration_for(Duration::from_secs(3600)),
            Err(StsError::Validation(_))
        ));
        let default = assume(s).unwrap();
        assert_eq!(
            default
                .duration_for(Duration::from_secs(43200))
                .unwrap()
                .as_secs(),
            3600
        );
    }

    #[test]
    fn lengths_duplicates_unknowns_and_actions() {
        let s = "&RoleSessionName=ok";
        let short = "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn:aws:iam::1:r&WebIdentityToken=a.b.c&RoleSessionName=ok";
        assert!(matches!(
            parse(short.as_bytes()),
            Err(StsError::Validation(_))
        ));
        let tiny_token = format!("Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn={ARN}&WebIdentityToken=abc&RoleSessionName=ok");
        assert!(matches!(
            parse(tiny_token.as_bytes()),
            Err(StsError::Validation(_))
        ));
        validation(assume(&format!("{s}&RoleSessionName=again")));
        validation(assume(&format!("{s}&Policy=%7B%7D")));
        validation(assume(&format!("{s}&PolicyArns.member.1.arn=x")));
        validation(assume(&format!("{s}&ProviderId=x")));
        assert!(matches!(
            parse(b"Version=2011-06-15"),
            Err(StsError::InvalidAction(_))
        ));
        assert!(matches!(
            parse(b"Action=AssumeRole&Version=2011-06-15"),
            Err(StsError::InvalidAction(_))
        ));
        assert!(matches!(
            parse(b"Action=GetCallerIdentity"),
            Err(StsError::InvalidAction(_))
        ));
        assert!(matches!(
            parse(b"Action=GetCallerIdentity&Version=2012-01-01"),
            Err(StsError::InvalidAction(_))
        ));
        assert!(matches!(
            parse(b"Action=getcalleridentity&Version=2011-06-15"),
            Err(StsError::InvalidAction(_))
        ));
    }
}
