//! octo-sts compatibility: the query of `GET|POST /sts/exchange` (`identity`, `scope`, `scopes`) parsed into a broker name and the repositories the caller expects.
//!
//! octo-sts/action asks for `/sts/exchange?scope=OWNER/REPO&scopes=OWNER/REPO&identity=NAME`
//! with the job's OIDC token as a bearer token. In tokenmint `identity` names a
//! broker and every `scope`/`scopes` entry must be that broker's repository;
//! the check itself is [`crate::exchange`]'s, so an octo-sts request runs the
//! same exchange as `POST /v1/brokers/{name}/token`. This module only turns
//! the query into an [`OctoStsQuery`] or says what is malformed (400).

use crate::text::printable;

/// The parameters octo-sts/action sends. Anything else is refused: the
/// scope of a token is the broker's configuration, so no other parameter
/// could mean anything.
const PARAMETERS: [&str; 3] = ["identity", "scope", "scopes"];

/// A well-formed `/sts/exchange` query. Not yet authorized: the scopes are
/// what the caller asked for, checked against the broker by the exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OctoStsQuery {
    /// The broker name, from `identity` (its syntax is checked by the exchange).
    pub identity: String,
    /// Every repository named by `scope` and by the comma-separated `scopes`,
    /// in order; never empty. Each must equal the broker's `owner/repo`.
    pub scopes: Vec<String>,
}

/// Why an `/sts/exchange` query is malformed (400 `invalid_request`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OctoStsError {
    /// No `identity`, or an empty one.
    #[error("missing identity: /sts/exchange needs identity=BROKER (the tokenmint broker name)")]
    MissingIdentity,
    /// Neither `scope` nor `scopes`.
    #[error("missing scope: /sts/exchange needs scope=OWNER/REPO (the broker's repository)")]
    MissingScope,
    /// `scope` is empty, or `scopes` has an empty entry.
    #[error("empty {0}: name the broker's repository as OWNER/REPO")]
    EmptyScope(&'static str),
    /// A parameter was given more than once.
    #[error("parameter {0} given more than once; send it once")]
    Repeated(&'static str),
    /// A parameter octo-sts does not define.
    #[error("unknown parameter {0:?}; /sts/exchange takes only identity, scope and scopes")]
    UnknownParameter(String),
}

/// Parses the raw query string of an `/sts/exchange` request
/// (`application/x-www-form-urlencoded`, as browsers and `fetch` send it).
pub fn parse_query(query: Option<&str>) -> Result<OctoStsQuery, OctoStsError> {
    let mut values: [Option<String>; 3] = [None, None, None];
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let Some(i) = PARAMETERS.iter().position(|p| *p == name) else {
            return Err(OctoStsError::UnknownParameter(printable(&name, 64)));
        };
        if values[i].replace(value.into_owned()).is_some() {
            return Err(OctoStsError::Repeated(PARAMETERS[i]));
        }
    }
    let [identity, scope, scopes] = values;
    let identity = identity
        .filter(|i| !i.is_empty())
        .ok_or(OctoStsError::MissingIdentity)?;
    let mut all = Vec::new();
    if let Some(scope) = scope {
        if scope.is_empty() {
            return Err(OctoStsError::EmptyScope("scope"));
        }
        all.push(scope);
    }
    if let Some(scopes) = scopes {
        for entry in scopes.split(',') {
            if entry.is_empty() {
                return Err(OctoStsError::EmptyScope("scopes entry"));
            }
            all.push(entry.to_owned());
        }
    }
    if all.is_empty() {
        return Err(OctoStsError::MissingScope);
    }
    Ok(OctoStsQuery {
        identity,
        scopes: all,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(q: &str) -> OctoStsQuery {
        parse_query(Some(q)).unwrap()
    }

    #[test]
    fn octo_sts_action_queries_parse() {
        // What octo-sts/action sends today, and before `scopes` existed.
        assert_eq!(
            ok("scope=acme/widgets&scopes=acme/widgets&identity=widgets-read"),
            OctoStsQuery {
                identity: "widgets-read".into(),
                scopes: vec!["acme/widgets".into(), "acme/widgets".into()],
            }
        );
        assert_eq!(
            ok("scope=acme/widgets&identity=widgets-read").scopes,
            ["acme/widgets"]
        );
        assert_eq!(
            ok("identity=x&scopes=acme/a,acme/b").scopes,
            ["acme/a", "acme/b"]
        );
        assert_eq!(
            ok("identity=x&scope=acme%2Fwidgets").scopes,
            ["acme/widgets"]
        );
    }

    #[test]
    fn malformed_queries_are_refused() {
        let err = |q: Option<&str>| parse_query(q).unwrap_err();
        assert_eq!(err(None), OctoStsError::MissingIdentity);
        assert_eq!(err(Some("scope=acme/w")), OctoStsError::MissingIdentity);
        assert_eq!(
            err(Some("scope=acme/w&identity=")),
            OctoStsError::MissingIdentity
        );
        assert_eq!(err(Some("identity=x")), OctoStsError::MissingScope);
        assert_eq!(
            err(Some("identity=x&scope=")),
            OctoStsError::EmptyScope("scope")
        );
        assert_eq!(
            err(Some("identity=x&scopes=acme/w,")),
            OctoStsError::EmptyScope("scopes entry")
        );
        assert_eq!(
            err(Some("identity=x&identity=y&scope=acme/w")),
            OctoStsError::Repeated("identity")
        );
        assert_eq!(
            err(Some("identity=x&scope=acme/a&scope=acme/b")),
            OctoStsError::Repeated("scope")
        );
        assert_eq!(
            err(Some("identity=x&scope=acme/w&permissions=admin")),
            OctoStsError::UnknownParameter("permissions".into())
        );
    }
}
