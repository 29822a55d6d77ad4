//! Linting tokenmint configs: reads `[[broker]]` and `[[role]]` entries (nothing else, so no App key is needed), runs the shared rules and the config-only ones on brokers, and lints the IAM document of each broker that uses `trust_policy_file` and of each role.

use super::model::{self, ClaimCond, Kind};
use super::{finding, Finding, LintError, Location};
use crate::github::{Level, Permissions};
use crate::policy::{Condition, TrustPolicy};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What the linter needs of one `[[broker]]`.
struct LintBroker {
    name: String,
    issuer: String,
    permissions: Permissions,
    /// `[broker.claims]`, or the IAM document named by `trust_policy_file`.
    policy: LintPolicy,
}

/// A broker's trust policy, as the linter reads it.
enum LintPolicy {
    /// `[broker.claims]`, compiled as the server compiles it.
    Claims(TrustPolicy),
    /// `trust_policy_file`, resolved against the config's directory (as the
    /// server resolves it); linted by the IAM rules.
    Iam(PathBuf),
}

impl LintBroker {
    /// The claim conditions, for rules that read them (none for an IAM
    /// document: its statements are linted by [`super::iam`]).
    fn claims(&self) -> Option<&TrustPolicy> {
        match &self.policy {
            LintPolicy::Claims(policy) => Some(policy),
            LintPolicy::Iam(_) => None,
        }
    }
}

/// What the linter needs of one `[[role]]` (the STS endpoint's roles).
struct LintRole {
    /// The role ARN as written.
    arn: String,
    /// `trust_policy_file`, resolved against the config's directory (as the
    /// server resolves it).
    file: PathBuf,
}

/// Lints the brokers and roles in config `text`.
pub(super) fn lint(text: &str, path: &Path) -> Result<Vec<Finding>, LintError> {
    let (brokers, roles) = parse(text, path)?;
    let lines = Lines::new(text);
    let mut findings = Vec::new();
    for b in &brokers {
        let at = |claim: Option<&str>| Location::Broker {
            broker: b.name.clone(),
            claim: claim.map(str::to_owned),
        };
        if let Some(policy) = b.claims() {
            for (id, claim, message, fix) in model::shared_rules(&neutral(policy)) {
                let line = lines.claim(&b.name, claim.as_deref());
                findings.push(finding(id, message, fix, at(claim.as_deref()), line));
            }
        }
        if let Some(message) = pull_request_write(b) {
            let line = lines.claim(&b.name, Some("sub"));
            findings.push(finding("TM004", message, None, at(Some("sub")), line));
        }
        for (name, level) in b.permissions.iter() {
            let broad = matches!(name, "administration" | "workflows" | "secrets")
                || name.starts_with("organization_")
                || (name == "actions" && level >= Level::Write);
            if broad {
                let key = format!("permissions.{name}");
                findings.push(finding(
                    "TM010",
                    format!("permission {name}: {level} is broad: a token with it can change settings, workflows or secrets and escalate from there"),
                    None,
                    at(Some(&key)),
                    lines.permission(&b.name, name),
                ));
            }
        }
        if let Some(message) = event_name_open(b) {
            let line = lines.claim(&b.name, Some("event_name"));
            findings.push(finding(
                "TM011",
                message,
                None,
                at(Some("event_name")),
                line,
            ));
        }
    }
    same_claims_rule(&brokers, &lines, &mut findings);
    findings.sort_by(|a, b| a.line.cmp(&b.line).then(a.rule_id.cmp(b.rule_id)));
    // Then each trust_policy_file, in broker order, then role order, with
    // the IAM rules.
    for b in &brokers {
        let LintPolicy::Iam(file) = &b.policy else {
            continue;
        };
        findings.extend(lint_trust_policy_file(file, |index, sid, key| {
            Location::BrokerStatement {
                broker: b.name.clone(),
                index,
                sid,
                key,
            }
        })?);
    }
    for r in &roles {
        findings.extend(lint_trust_policy_file(&r.file, |index, sid, key| {
            Location::RoleStatement {
                role: r.arn.clone(),
                index,
                sid,
                key,
            }
        })?);
    }
    Ok(findings)
}

/// Lints the IAM trust-policy document `file` (a broker's or a role's
/// `trust_policy_file`) with the IAM rules: each finding is located in that
/// file, at its line, and `place` turns the statement index, `Sid` and key
/// into the location naming the broker or role.
fn lint_trust_policy_file(
    file: &Path,
    place: impl Fn(usize, Option<String>, Option<String>) -> Location,
) -> Result<Vec<Finding>, LintError> {
    let text = std::fs::read_to_string(file).map_err(|source| LintError::Read {
        path: file.to_owned(),
        source,
    })?;
    let mut findings = super::iam::lint(&text, file)?;
    for f in &mut findings {
        if let Location::Statement { index, sid, key } = &f.location {
            f.location = place(*index, sid.clone(), key.clone());
        }
        f.file = Some(file.to_owned());
    }
    Ok(findings)
}

/// Reads the `[[broker]]` and `[[role]]` arrays, compiling each broker's
/// policy and permission set exactly as the server does.
fn parse(text: &str, path: &Path) -> Result<(Vec<LintBroker>, Vec<LintRole>), LintError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| LintError::Syntax {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    let invalid = |entry: &str, message: String| LintError::Invalid {
        path: path.to_owned(),
        entry: entry.to_owned(),
        message,
    };
    let Some(toml::Value::Array(raw)) = table.get("broker") else {
        return Err(invalid(
            "[[broker]]",
            "no [[broker]] entries to lint; add one, or lint an IAM policy with --iam-policy"
                .to_owned(),
        ));
    };
    let mut out = Vec::new();
    for (index, raw) in raw.iter().enumerate() {
        let entry = format!("[[broker]] #{}", index + 1);
        let Some(raw) = raw.as_table() else {
            return Err(invalid(&entry, "must be a table".to_owned()));
        };
        let name = raw
            .get("name")
            .and_then(toml::Value::as_str)
            .ok_or_else(|| invalid(&entry, "has no string name".to_owned()))?
            .to_owned();
        let entry = format!("[[broker]] {name:?}");
        let issuer = raw
            .get("issuer")
            .and_then(toml::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let perms = match raw.get("permissions") {
            Some(toml::Value::Table(t)) => t
                .iter()
                .map(|(k, v)| {
                    v.as_str().map(|v| (k.as_str(), v)).ok_or_else(|| {
                        invalid(
                            &entry,
                            format!("permission {k} must be a string level such as \"read\""),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => {
                return Err(invalid(
                    &entry,
                    "permissions must be a table such as { contents = \"read\" }".to_owned(),
                ))
            }
        };
        let permissions = Permissions::parse(perms)
            .map_err(|e| invalid(&format!("{entry} permissions"), e.to_string()))?;
        let policy = match (raw.get("claims"), raw.get("trust_policy_file")) {
            (None, Some(toml::Value::String(file))) => {
                // Relative to the config's directory, as the server reads it.
                let dir = path.parent().unwrap_or_else(|| Path::new(""));
                LintPolicy::Iam(dir.join(file))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    &entry,
                    "trust_policy_file must be a string path such as \"trust.json\"".to_owned(),
                ))
            }
            (Some(_), Some(_)) => {
                return Err(invalid(
                    &entry,
                    "set either [broker.claims] or trust_policy_file, not both".to_owned(),
                ))
            }
            (claims, None) => {
                let claims = match claims {
                    Some(toml::Value::Table(t)) => t.clone(),
                    None => toml::Table::new(),
                    Some(_) => {
                        return Err(invalid(
                            &entry,
                            "[broker.claims] must be a table".to_owned(),
                        ))
                    }
                };
                LintPolicy::Claims(
                    TrustPolicy::compile(&claims)
                        .map_err(|e| invalid(&format!("{entry} [broker.claims]"), e.to_string()))?,
                )
            }
        };
        out.push(LintBroker {
            name,
            issuer,
            permissions,
            policy,
        });
    }
    let roles = parse_roles(&table, path)?;
    Ok((out, roles))
}

/// Reads the `[[role]]` array: each role's ARN and trust policy file.
/// (`check-config` validates the ARN and the policy's provider.)
fn parse_roles(table: &toml::Table, path: &Path) -> Result<Vec<LintRole>, LintError> {
    let invalid = |entry: &str, message: &str| LintError::Invalid {
        path: path.to_owned(),
        entry: entry.to_owned(),
        message: message.to_owned(),
    };
    let raw = match table.get("role") {
        None => return Ok(Vec::new()),
        Some(toml::Value::Array(raw)) => raw,
        Some(_) => return Err(invalid("[[role]]", "must be an array of tables ([[role]])")),
    };
    let dir = path.parent().unwrap_or_else(|| Path::new(""));
    raw.iter()
        .enumerate()
        .map(|(index, raw)| {
            let entry = format!("[[role]] #{}", index + 1);
            let raw = raw
                .as_table()
                .ok_or_else(|| invalid(&entry, "must be a table"))?;
            let arn = raw
                .get("arn")
                .and_then(toml::Value::as_str)
                .ok_or_else(|| {
                    invalid(
                        &entry,
                        "has no string arn such as \"arn:aws:iam::123456789012:role/NAME\"",
                    )
                })?
                .to_owned();
            let file = raw
                .get("trust_policy_file")
                .and_then(toml::Value::as_str)
                .ok_or_else(|| {
                    invalid(
                        &format!("[[role]] {arn:?}"),
                        "trust_policy_file must be a string path such as \"trust.json\"",
                    )
                })?;
            // Relative to the config's directory, as the server reads it.
            Ok(LintRole {
                file: dir.join(file),
                arn,
            })
        })
        .collect()
}

/// The policy in the shared model.
fn neutral(policy: &TrustPolicy) -> Vec<ClaimCond> {
    policy
        .conditions()
        .map(|(claim, c)| ClaimCond {
            claim: claim.to_owned(),
            key: claim.to_owned(),
            kind: kind(c),
            patterns: c.patterns().into_iter().map(str::to_owned).collect(),
        })
        .collect()
}

fn kind(c: &Condition) -> Kind {
    match c {
        Condition::Exact(_) => Kind::Exact,
        Condition::Like(_) => Kind::Like,
        Condition::Matches(_) => Kind::Regex,
    }
}

fn writes(b: &LintBroker) -> Vec<String> {
    b.permissions
        .iter()
        .filter(|(_, level)| *level >= Level::Write)
        .map(|(name, level)| format!("{name}: {level}"))
        .collect()
}

fn condition<'a>(b: &'a LintBroker, claim: &str) -> Option<&'a Condition> {
    b.claims()?
        .conditions()
        .find(|(c, _)| *c == claim)
        .map(|(_, c)| c)
}

/// `TM004`: a `sub` condition that matches some `repo:X:pull_request`,
/// an `event_name` condition (if any) that admits `pull_request`, and a
/// write or admin permission.
fn pull_request_write(b: &LintBroker) -> Option<String> {
    let writes = writes(b);
    if writes.is_empty() {
        return None;
    }
    let sub = condition(b, "sub")?;
    if condition(b, "event_name").is_some_and(|c| !c.is_satisfied_by("pull_request")) {
        return None;
    }
    let candidate = sub
        .patterns()
        .iter()
        .flat_map(|p| pull_request_subjects(kind(sub), p))
        .find(|s| sub.is_satisfied_by(s))?;
    Some(format!(
        "sub admits pull-request subjects such as {candidate:?}, and the broker grants {}",
        writes.join(", ")
    ))
}

/// Pull-request subjects a pattern might match, built from its literal
/// prefix (`repo:acme/app:*` gives `repo:acme/app:pull_request`).
fn pull_request_subjects(kind: Kind, pattern: &str) -> Vec<String> {
    let lit = model::literal_prefix(kind, pattern);
    // Most readable first: the first one that matches is shown.
    let mut heads = Vec::new();
    if let Some(slash) = lit.find('/') {
        if let Some(colon) = lit.get(slash..).and_then(|rest| rest.find(':')) {
            heads.push(lit.get(..slash + colon).unwrap_or_default().to_owned());
        }
    }
    let trimmed = lit.trim_end_matches(':');
    heads.extend([
        trimmed.to_owned(),
        format!("{trimmed}x"),
        format!("{trimmed}x/x"),
        "repo:x/x".to_owned(),
    ]);
    heads
        .into_iter()
        .map(|h| format!("{h}:pull_request"))
        .collect()
}

/// `TM011`: a write-capable broker whose `event_name` condition is missing
/// or admits an event that can run fork code with a base-branch `ref`.
fn event_name_open(b: &LintBroker) -> Option<String> {
    let writes = writes(b);
    // An IAM document's conditions are not read here (its statements get the IAM rules).
    if writes.is_empty() || b.claims().is_none() {
        return None;
    }
    const RISKY: [&str; 3] = ["pull_request_target", "workflow_run", "issue_comment"];
    match condition(b, "event_name") {
        None => Some(format!(
            "no event_name condition, so {} runs can use this broker (it grants {})",
            RISKY.join(", "),
            writes.join(", ")
        )),
        Some(c) => {
            let open: Vec<&str> = RISKY.into_iter().filter(|e| c.is_satisfied_by(e)).collect();
            (!open.is_empty()).then(|| {
                format!(
                    "event_name admits {}, which can run fork code with a base-branch ref (it grants {})",
                    open.join(", "),
                    writes.join(", ")
                )
            })
        }
    }
}

/// `TM007`: brokers of one issuer with identical conditions (or the same
/// `trust_policy_file`) and different permissions. Reported on each later
/// broker, naming the first.
fn same_claims_rule(brokers: &[LintBroker], lines: &Lines<'_>, findings: &mut Vec<super::Finding>) {
    let mut seen: BTreeMap<String, &LintBroker> = BTreeMap::new();
    for b in brokers {
        let signature = match &b.policy {
            LintPolicy::Claims(policy) => format!(
                "{}\nclaims {:?}",
                b.issuer,
                policy
                    .conditions()
                    .map(|(claim, c)| (claim, c.operator(), c.patterns()))
                    .collect::<Vec<_>>()
            ),
            LintPolicy::Iam(file) => format!("{}\nfile {}", b.issuer, file.display()),
        };
        match seen.get(&signature) {
            Some(first) if perms(first) != perms(b) => findings.push(finding(
                "TM007",
                format!(
                    "broker {:?} has the same claim conditions as broker {:?} but different permissions ({} vs {}): any job that can use one can use the other",
                    b.name,
                    first.name,
                    perms(b).join(", "),
                    perms(first).join(", ")
                ),
                None,
                Location::Broker {
                    broker: b.name.clone(),
                    claim: None,
                },
                lines.broker(&b.name),
            )),
            Some(_) => {}
            None => {
                seen.insert(signature, b);
            }
        }
    }
}

fn perms(b: &LintBroker) -> Vec<String> {
    b.permissions
        .iter()
        .map(|(name, level)| format!("{name}: {level}"))
        .collect()
}

/// Best-effort line numbers in the TOML text.
struct Lines<'a> {
    lines: Vec<&'a str>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            lines: text.lines().collect(),
        }
    }

    /// 0-based range of the broker's block: from its `name = "…"` line
    /// (inside a `[[broker]]` table) to the next `[[…]]` header.
    fn block(&self, broker: &str) -> Option<(usize, usize)> {
        let is_header = |l: &str| l.trim_start().starts_with("[[");
        let mut in_broker = false;
        let name_at = self.lines.iter().position(|l| {
            let t = l.trim();
            if is_header(t) {
                in_broker = t.replace(' ', "") == "[[broker]]";
                return false;
            }
            in_broker
                && t.strip_prefix("name")
                    .map(str::trim_start)
                    .and_then(|r| r.strip_prefix('='))
                    .map(str::trim)
                    .is_some_and(|v| v.trim_matches(['"', '\'']) == broker)
        })?;
        let end = (name_at + 1..self.lines.len())
            .find(|i| self.lines.get(*i).is_some_and(|l| is_header(l)))
            .unwrap_or(self.lines.len());
        Some((name_at, end))
    }

    /// Line of the broker's `name`, else 1.
    fn broker(&self, broker: &str) -> usize {
        self.block(broker).map_or(1, |(name, _)| name + 1)
    }

    /// Line of `key = …` within the broker's block, else the broker's line.
    fn key(&self, broker: &str, key: &str) -> usize {
        let Some((name, end)) = self.block(broker) else {
            return 1;
        };
        let quoted = format!("\"{key}\"");
        (name..end)
            .find(|i| {
                self.lines.get(*i).is_some_and(|l| {
                    let l = l.trim_start();
                    let rest = l
                        .strip_prefix(key)
                        .or_else(|| l.strip_prefix(quoted.as_str()));
                    rest.is_some_and(|r| r.trim_start().starts_with('='))
                })
            })
            .map_or(name + 1, |i| i + 1)
    }

    fn claim(&self, broker: &str, claim: Option<&str>) -> usize {
        match claim {
            Some(claim) => self.key(broker, claim),
            None => self.broker(broker),
        }
    }

    fn permission(&self, broker: &str, name: &str) -> usize {
        let at = self.key(broker, name);
        if at != self.broker(broker) {
            return at;
        }
        self.key(broker, "permissions")
    }
}
