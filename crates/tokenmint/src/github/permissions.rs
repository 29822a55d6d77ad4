//! GitHub App permission sets: parsing against GitHub's published vocabulary, and the "granted does not exceed requested" check.

use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

/// GitHub's App-permission vocabulary, extracted from the REST OpenAPI
/// description (`components.schemas.app-permissions`).
const VOCABULARY_JSON: &str = include_str!("../../data/github-app-permissions.json");

/// Why a permission map was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PermissionError {
    /// No permissions at all: GitHub would grant everything the installation has.
    #[error("the permission set is empty; list at least one permission, e.g. contents = \"read\" (an empty set would grant everything the installation has)")]
    Empty,
    /// A name outside GitHub's vocabulary.
    #[error("unknown GitHub App permission `{name}`; use one of GitHub's App permission names, e.g. contents, issues, pull_requests")]
    UnknownName {
        /// The name as written.
        name: String,
    },
    /// A level this permission does not have.
    #[error("permission `{name}` does not allow level `{level}`; allowed: {allowed}")]
    BadLevel {
        /// Permission name.
        name: String,
        /// Level as written.
        level: String,
        /// The allowed levels, comma separated.
        allowed: String,
    },
}

/// An access level, ordered `read < write < admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// `read`
    Read,
    /// `write`
    Write,
    /// `admin`
    Admin,
}

impl Level {
    /// Parses GitHub's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Self::Read),
            "write" => Some(Self::Write),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    /// GitHub's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Level {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

fn vocabulary() -> &'static BTreeMap<String, Vec<Level>> {
    static VOCAB: OnceLock<BTreeMap<String, Vec<Level>>> = OnceLock::new();
    VOCAB.get_or_init(|| {
        #[derive(serde::Deserialize)]
        struct File {
            permissions: BTreeMap<String, Vec<String>>,
        }
        // The file is compiled in and checked by a unit test, so an error here
        // is a build defect; degrade to an empty vocabulary (which refuses every
        // permission: fail closed) rather than panic.
        serde_json::from_str::<File>(VOCABULARY_JSON)
            .map(|f| {
                f.permissions
                    .into_iter()
                    .map(|(k, v)| (k, v.iter().filter_map(|l| Level::parse(l)).collect()))
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// A validated, non-empty permission set: every name and level is in GitHub's
/// vocabulary. Serialises as GitHub's `{"contents":"read",...}` map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Permissions(BTreeMap<String, Level>);

impl Permissions {
    /// Validates a raw name → level map.
    pub fn parse<'a, I>(raw: I) -> Result<Self, PermissionError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let vocab = vocabulary();
        let mut out = BTreeMap::new();
        for (name, level) in raw {
            let allowed = vocab
                .get(name)
                .ok_or_else(|| PermissionError::UnknownName {
                    name: name.to_owned(),
                })?;
            let parsed = Level::parse(level)
                .filter(|l| allowed.contains(l))
                .ok_or_else(|| PermissionError::BadLevel {
                    name: name.to_owned(),
                    level: level.to_owned(),
                    allowed: allowed
                        .iter()
                        .map(|l| l.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            out.insert(name.to_owned(), parsed);
        }
        if out.is_empty() {
            return Err(PermissionError::Empty);
        }
        Ok(Self(out))
    }

    /// The permissions, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Level)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// The level for `name`, if requested.
    pub fn get(&self, name: &str) -> Option<Level> {
        self.0.get(name).copied()
    }

    /// Checks that `granted` (GitHub's answer, raw) does not exceed this
    /// requested set. `metadata: read` is tolerated because GitHub adds it to
    /// every installation token. Returns a description of the first excess.
    pub fn check_granted<'a, I>(&self, granted: I) -> Result<(), String>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        for (name, level) in granted {
            let Some(level) = Level::parse(level) else {
                return Err(format!(
                    "GitHub granted `{name}: {level}`, an unknown level"
                ));
            };
            match self.get(name) {
                Some(requested) if level <= requested => {}
                None if name == "metadata" && level == Level::Read => {}
                Some(requested) => {
                    return Err(format!(
                    "GitHub granted `{name}: {level}` but only `{name}: {requested}` was requested"
                ))
                }
                None => {
                    return Err(format!(
                        "GitHub granted `{name}: {level}`, which was not requested"
                    ))
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_loads() {
        let v = vocabulary();
        assert!(
            v.len() > 40,
            "vocabulary should hold GitHub's permission list"
        );
        assert_eq!(v["contents"], vec![Level::Read, Level::Write]);
        assert_eq!(v["workflows"], vec![Level::Write]);
    }

    #[test]
    fn parses_valid_and_rejects_invalid() {
        let p = Permissions::parse([("contents", "read"), ("issues", "write")]).unwrap();
        assert_eq!(p.get("issues"), Some(Level::Write));
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"contents":"read","issues":"write"}"#
        );
        assert!(matches!(
            Permissions::parse([]),
            Err(PermissionError::Empty)
        ));
        assert!(matches!(
            Permissions::parse([("contnets", "read")]),
            Err(PermissionError::UnknownName { .. })
        ));
        assert!(matches!(
            Permissions::parse([("workflows", "read")]),
            Err(PermissionError::BadLevel { .. })
        ));
        assert!(matches!(
            Permissions::parse([("contents", "Read")]),
            Err(PermissionError::BadLevel { .. })
        ));
        assert!(Permissions::parse([("repository_projects", "admin")]).is_ok());
    }

    #[test]
    fn granted_must_not_exceed_requested() {
        let p = Permissions::parse([("contents", "write")]).unwrap();
        assert!(p.check_granted([("contents", "write")]).is_ok());
        assert!(p.check_granted([("contents", "read")]).is_ok());
        assert!(p
            .check_granted([("contents", "write"), ("metadata", "read")])
            .is_ok());
        assert!(p.check_granted([("metadata", "write")]).is_err());
        assert!(p.check_granted([("issues", "read")]).is_err());
        let r = Permissions::parse([("contents", "read")]).unwrap();
        assert!(r.check_granted([("contents", "write")]).is_err());
        assert!(r.check_granted([("contents", "bogus")]).is_err());
    }
}
