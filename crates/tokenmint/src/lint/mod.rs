//! `policy lint`: findings with stable rule IDs for risky trust policies, in tokenmint configs and in AWS IAM trust-policy JSON, rendered as text, JSON or SARIF 2.1.0.
//!
//! # Layout
//!
//! - this module: the rule table ([`RULES`]), [`Severity`], [`Finding`],
//!   [`Report`] and the two entry points, [`lint_config_text`] and
//!   [`lint_iam_text`];
//! - `model`: a neutral view of one claim condition (claim, exact/like/regex,
//!   patterns) and the rules both sources share (`TM001`–`TM003`, `TM005`,
//!   `TM006`, `TM008`, `TM009`, `TM012`), with the pattern analysis they use;
//! - `config`: reads `[[broker]]` entries and the config-only rules (`TM004`,
//!   `TM007`, `TM010`, `TM011`); a broker's `trust_policy_file`, and every
//!   `[[role]]`'s, goes through `iam`, its findings located in that file;
//! - `iam`: a minimal walk over IAM policy JSON and the IAM-only rules
//!   (`TM101`–`TM103`);
//! - `sarif`: the SARIF 2.1.0 rendering for GitHub code scanning.
//!
//! Findings are advice about what a policy *admits*; they are never an
//! authorization decision. Rule IDs never change meaning: a retired rule's ID
//! is not reused.

mod config;
mod iam;
mod model;
mod sarif;

pub use sarif::to_sarif;

use serde_json::{json, Value};
use std::fmt;
use std::path::{Path, PathBuf};

/// How much a finding matters. Ordered `Info < Low < Medium < High`, so
/// `--fail-on` is a plain comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Worth knowing; not a defect on its own.
    Info,
    /// A smell that weakens a policy or invites a later mistake.
    Low,
    /// A weakness an attacker needs one more step to use (a rename, a
    /// broker chosen by the caller).
    Medium,
    /// A policy that admits identities it plainly should not.
    High,
}

impl Severity {
    /// `info`, `low`, `medium` or `high`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }

    /// Parses [`Severity::as_str`]'s spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "info" => Some(Self::Info),
            "low" => Some(Self::Low),
            "medium" => Some(Self::Medium),
            "high" => Some(Self::High),
            _ => None,
        }
    }

    /// SARIF `level`: high is `error`, medium `warning`, low and info `note`.
    pub fn sarif_level(self) -> &'static str {
        match self {
            Self::High => "error",
            Self::Medium => "warning",
            Self::Low | Self::Info => "note",
        }
    }

    /// GitHub code scanning's `security-severity` (a number as a string):
    /// 7.0–8.9 is shown as high, 4.0–6.9 medium, 0.1–3.9 low.
    pub fn security_severity(self) -> &'static str {
        match self {
            Self::High => "8.0",
            Self::Medium => "5.5",
            Self::Low => "3.0",
            Self::Info => "1.0",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which kind of document a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applies {
    /// tokenmint `[[broker]]` entries only.
    Config,
    /// AWS IAM trust-policy JSON only.
    Iam,
    /// Both.
    Both,
}

/// One lint rule. IDs are stable: `TM0xx` for rules on claim conditions
/// (tokenmint configs, and IAM where the concept carries over), `TM1xx` for
/// IAM-only rules.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// Stable ID, e.g. `TM001`.
    pub id: &'static str,
    /// PascalCase name, used as SARIF's `name`.
    pub name: &'static str,
    /// Severity of every finding of this rule.
    pub severity: Severity,
    /// Where it applies.
    pub applies: Applies,
    /// One line: what the rule flags.
    pub summary: &'static str,
    /// Why it matters, and why this severity.
    pub description: &'static str,
    /// The general fix (findings carry a specific one).
    pub fix: &'static str,
}

/// Every rule, in ID order.
pub const RULES: &[Rule] = &[
    Rule {
        id: "TM001",
        name: "WildcardCrossesOwner",
        severity: Severity::High,
        applies: Applies::Both,
        summary: "a sub, repository, workflow_ref or job_workflow_ref pattern can match another owner's repositories",
        description: "A wildcard or regex class before the owner's '/' (repo:*, repo:acme*, *, .*) matches repositories of owners you do not control, e.g. acme-evil. One issuer serves every GitHub repository, so anyone can create such a repository and get a token. High: exploitable by anyone, with no further step. Not reported when another condition pins the owner.",
        fix: "write the owner literally (repo:acme/app:ref:refs/heads/main) and pin repository_owner_id and repository_id",
    },
    Rule {
        id: "TM002",
        name: "NoRepositoryBinding",
        severity: Severity::High,
        applies: Applies::Both,
        summary: "no condition on sub, repository, repository_id or job_workflow_ref",
        description: "Without a repository binding the policy admits tokens from every repository the issuer serves (issuer and audience alone do not identify anyone). Public scans have found many AWS roles like this. High: exploitable by anyone. (GitLab's project_path and project_id count as bindings.)",
        fix: "add repository_id = \"<id>\" (and repository_owner_id), or a sub condition naming the repository",
    },
    Rule {
        id: "TM003",
        name: "NamesWithoutIds",
        severity: Severity::Medium,
        applies: Applies::Both,
        summary: "the repository or owner is bound by name only, without repository_id or repository_owner_id",
        description: "A deleted or renamed repository or organisation name can be registered again by someone else, who then satisfies a name-only policy. Medium: needs a rename or deletion first. The immutable sub form (repo:OWNER@ID/REPO@ID:...) counts as an ID.",
        fix: "add repository_owner_id = \"<id>\" and repository_id = \"<id>\" next to the name conditions",
    },
    Rule {
        id: "TM004",
        name: "PullRequestWrite",
        severity: Severity::High,
        applies: Applies::Config,
        summary: "write or admin permissions are reachable from pull_request subjects",
        description: "A sub condition that matches repo:OWNER/REPO:pull_request lets any pull-request workflow in the repository (a branch push by anyone with write access, before review) mint write-scoped tokens. High: review is bypassed. Best effort: patterns are tested against synthesized pull_request subjects.",
        fix: "limit sub to protected refs or environments (repo:acme/app:ref:refs/heads/main), or give pull requests a separate read-only broker",
    },
    Rule {
        id: "TM005",
        name: "EnvironmentProtection",
        severity: Severity::Info,
        applies: Applies::Both,
        summary: "an environment binding is only as strong as that environment's protection rules",
        description: "Referencing an environment that does not exist creates it with no protection rules, and any workflow can name any environment. Info: the config cannot show whether protection rules exist.",
        fix: "make sure the environment exists with required reviewers or deployment branch rules, and keep a repository_id condition",
    },
    Rule {
        id: "TM006",
        name: "RunnerNotPinned",
        severity: Severity::Info,
        // STS has no runner_environment condition key, so a trust policy
        // cannot pin it (and a condition on it would never hold).
        applies: Applies::Config,
        summary: "runner_environment is not pinned to github-hosted",
        description: "Self-hosted runners can leak ACTIONS_ID_TOKEN_REQUEST_* between jobs, so tokens minted there are only as safe as the runner's isolation. Info: self-hosted runners may be intended.",
        fix: "add runner_environment = \"github-hosted\" unless self-hosted runners are intended (then use ephemeral, one-job runners)",
    },
    Rule {
        id: "TM007",
        name: "SameClaimsDifferentPermissions",
        severity: Severity::Medium,
        applies: Applies::Config,
        summary: "brokers with identical claim conditions but different permission sets",
        description: "The caller chooses the broker, so any job that can use one of these brokers can use all of them: the narrower one provides no least privilege and the split is misleading. Medium: no new identity is admitted, but the intended scoping is void.",
        fix: "tell the brokers apart by claims (a different environment, workflow or ref), or merge them",
    },
    Rule {
        id: "TM008",
        name: "LikeWithoutWildcard",
        severity: Severity::Low,
        applies: Applies::Both,
        summary: "a like / StringLike pattern has no wildcard",
        description: "A pattern without * or ? is an exact match written as a pattern; a later edit adding a wildcard goes unnoticed, and reviewers cannot tell intent. Low: no weakness today.",
        fix: "write it as an exact value (claim = \"value\" or StringEquals)",
    },
    Rule {
        id: "TM009",
        name: "UserControlledOnly",
        severity: Severity::High,
        applies: Applies::Both,
        summary: "only user-controlled claims (workflow, actor, head_ref, base_ref, environment, repo_property_*) bind the policy",
        description: "Whoever writes a workflow in any repository chooses these values (a workflow name, an environment name, a branch), so they identify nothing. High: exploitable by anyone.",
        fix: "add an identity condition: repository_id and repository_owner_id",
    },
    Rule {
        id: "TM010",
        name: "BroadAppPermission",
        severity: Severity::Medium,
        applies: Applies::Config,
        summary: "a broad GitHub App permission: administration, workflows, secrets, actions: write or any organization_*",
        description: "These permissions change repository settings, workflows or secrets, so a token with them can escalate to everything the repository's workflows can reach. Medium: the policy may be tight and the permission needed, but it deserves review.",
        fix: "drop the permission, or give it its own broker bound to a protected environment and a pinned repository_id",
    },
    Rule {
        id: "TM011",
        name: "EventNameNotAllowListed",
        severity: Severity::Low,
        applies: Applies::Config,
        summary: "a write-capable broker does not allow-list event_name, so pull_request_target, workflow_run or issue_comment runs can reach it",
        description: "Those events run in the base repository with ref set to the base branch, so their sub looks like refs/heads/main, yet they may execute fork code. Low: it takes an unsafe workflow too.",
        fix: "add event_name = [\"push\", \"workflow_dispatch\"] (the events the broker is for)",
    },
    Rule {
        id: "TM012",
        name: "ReusableWorkflowWithoutCaller",
        severity: Severity::High,
        applies: Applies::Both,
        summary: "job_workflow_ref is the only repository binding, so any caller of that reusable workflow is admitted",
        description: "job_workflow_ref names the reusable workflow, not the repository that calls it; any repository that can call it (every repository, for a public one) gets a token. High: exploitable by anyone who can call the workflow.",
        fix: "also pin the caller: repository_owner_id, and repository_id where possible",
    },
    Rule {
        id: "TM101",
        name: "IamMissingAudience",
        severity: Severity::High,
        applies: Applies::Iam,
        summary: "an Allow statement for web identity has no aud condition",
        description: "Without aud, a token minted for any other relying party (another cloud, another service) can be replayed to assume the role. High: tokens for other audiences are easy to obtain.",
        fix: "add \"StringEquals\": {\"token.actions.githubusercontent.com:aud\": \"sts.amazonaws.com\"}",
    },
    Rule {
        id: "TM102",
        name: "IamForAllValuesInAllow",
        severity: Severity::High,
        applies: Applies::Iam,
        summary: "ForAllValues: in an Allow statement",
        description: "ForAllValues is true when the key is absent or empty, so the condition can hold vacuously; with single-valued OIDC claims it never does what it seems to. High: the condition may bind nothing.",
        fix: "use the plain operator (StringEquals / StringLike) for single-valued keys, or ForAnyValue: with a Null check",
    },
    Rule {
        id: "TM103",
        name: "IamPrincipalStar",
        severity: Severity::High,
        applies: Applies::Iam,
        summary: "Principal is \"*\"",
        description: "A wildcard principal lets any identity provider, or any AWS account, assume the role if the conditions hold. High: everything then rests on conditions alone.",
        fix: "set Principal to {\"Federated\": \"arn:aws:iam::<account>:oidc-provider/token.actions.githubusercontent.com\"}",
    },
];

/// The rule with this ID.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

/// Where a finding is, in terms of the linted document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A tokenmint `[[broker]]`, and the claim key or setting if the
    /// finding is about one.
    Broker {
        /// Broker name.
        broker: String,
        /// Claim key, or `permissions.NAME` for permission findings.
        claim: Option<String>,
    },
    /// An IAM statement (zero-based index) and the condition key if any.
    Statement {
        /// Index in `Statement`.
        index: usize,
        /// Statement `Sid`, if any.
        sid: Option<String>,
        /// Condition key as written, or `Principal`.
        key: Option<String>,
    },
    /// A statement of the IAM trust-policy document a `[[broker]]` names
    /// with `trust_policy_file` (the finding's [`Finding::file`]).
    BrokerStatement {
        /// Broker name.
        broker: String,
        /// Index in `Statement`.
        index: usize,
        /// Statement `Sid`, if any.
        sid: Option<String>,
        /// Condition key as written, or `Principal`.
        key: Option<String>,
    },
    /// A statement of the IAM trust-policy document of a `[[role]]` (the
    /// STS endpoint's roles; the finding's [`Finding::file`]).
    RoleStatement {
        /// The role ARN as written.
        role: String,
        /// Index in `Statement`.
        index: usize,
        /// Statement `Sid`, if any.
        sid: Option<String>,
        /// Condition key as written, or `Principal`.
        key: Option<String>,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Broker { broker, claim } => {
                write!(f, "broker {broker:?}")?;
                if let Some(claim) = claim {
                    write!(f, " {claim}")?;
                }
                Ok(())
            }
            Self::Statement { index, sid, key } => {
                statement(f, *index, sid.as_deref(), key.as_deref())
            }
            Self::BrokerStatement {
                broker,
                index,
                sid,
                key,
            } => {
                write!(f, "broker {broker:?} trust_policy_file ")?;
                statement(f, *index, sid.as_deref(), key.as_deref())
            }
            Self::RoleStatement {
                role,
                index,
                sid,
                key,
            } => {
                write!(f, "role {role:?} trust_policy_file ")?;
                statement(f, *index, sid.as_deref(), key.as_deref())
            }
        }
    }
}

/// `Statement[i] ("Sid") key`, the part of a location inside an IAM document.
fn statement(
    f: &mut fmt::Formatter<'_>,
    index: usize,
    sid: Option<&str>,
    key: Option<&str>,
) -> fmt::Result {
    write!(f, "Statement[{index}]")?;
    if let Some(sid) = sid {
        write!(f, " ({sid:?})")?;
    }
    if let Some(key) = key {
        write!(f, " {key}")?;
    }
    Ok(())
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The rule's stable ID.
    pub rule_id: &'static str,
    /// The rule's severity.
    pub severity: Severity,
    /// What is wrong here, naming the claim and pattern.
    pub message: String,
    /// What to change.
    pub fix: String,
    /// Where.
    pub location: Location,
    /// 1-based line in the linted file (best effort; 1 if not found).
    pub line: usize,
    /// The file the finding is in, when it is not the report's own: a
    /// broker's or role's `trust_policy_file`, resolved against the config's
    /// directory.
    pub file: Option<PathBuf>,
}

impl Finding {
    /// The file the finding is in: [`Finding::file`], else the report's.
    pub fn file_or<'a>(&'a self, report_path: &'a Path) -> &'a Path {
        self.file.as_deref().unwrap_or(report_path)
    }
}

/// What kind of document was linted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentKind {
    /// A tokenmint config.
    Config,
    /// An AWS IAM trust-policy document.
    IamPolicy,
}

/// The findings for one file.
#[derive(Debug, Clone)]
pub struct Report {
    /// The file as given on the command line (used as SARIF's artifact URI).
    pub path: PathBuf,
    /// What it was.
    pub kind: DocumentKind,
    /// Findings, in document order then rule ID.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether any finding is at or above `threshold`.
    pub fn fails(&self, threshold: Severity) -> bool {
        self.findings.iter().any(|f| f.severity >= threshold)
    }

    /// How many findings of each severity, highest first.
    pub fn counts(&self) -> [(Severity, usize); 4] {
        [
            Severity::High,
            Severity::Medium,
            Severity::Low,
            Severity::Info,
        ]
        .map(|s| (s, self.findings.iter().filter(|f| f.severity == s).count()))
    }

    /// Machine-readable form for `--format json`.
    pub fn to_json(&self) -> Value {
        let findings: Vec<Value> = self
            .findings
            .iter()
            .map(|f| {
                let location = match &f.location {
                    Location::Broker { broker, claim } => json!({"broker": broker, "claim": claim}),
                    Location::Statement { index, sid, key } => {
                        json!({"statement": index, "sid": sid, "key": key})
                    }
                    Location::BrokerStatement {
                        broker,
                        index,
                        sid,
                        key,
                    } => {
                        json!({"broker": broker, "statement": index, "sid": sid, "key": key})
                    }
                    Location::RoleStatement {
                        role,
                        index,
                        sid,
                        key,
                    } => {
                        json!({"role": role, "statement": index, "sid": sid, "key": key})
                    }
                };
                json!({
                    "rule_id": f.rule_id,
                    "severity": f.severity.as_str(),
                    "message": f.message,
                    "fix": f.fix,
                    "location": location,
                    "line": f.line,
                    "file": f.file_or(&self.path).display().to_string(),
                })
            })
            .collect();
        let counts: serde_json::Map<String, Value> = self
            .counts()
            .iter()
            .map(|(s, n)| (s.as_str().to_owned(), Value::from(*n)))
            .collect();
        json!({
            "file": self.path.display().to_string(),
            "kind": match self.kind {
                DocumentKind::Config => "tokenmint-config",
                DocumentKind::IamPolicy => "iam-trust-policy",
            },
            "findings": findings,
            "counts": counts,
        })
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        for finding in &self.findings {
            writeln!(
                f,
                "{}:{}: {} {} {}: {}",
                finding.file_or(&self.path).display(),
                finding.line,
                finding.severity,
                finding.rule_id,
                finding.location,
                finding.message
            )?;
            writeln!(f, "    fix: {}", finding.fix)?;
        }
        let counts: Vec<String> = self
            .counts()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        if counts.is_empty() {
            writeln!(f, "{path}: no findings")
        } else {
            writeln!(
                f,
                "{path}: {} finding(s): {}",
                self.findings.len(),
                counts.join(", ")
            )
        }
    }
}

/// Why a document could not be linted at all.
#[derive(Debug, thiserror::Error)]
pub enum LintError {
    /// The file could not be read.
    #[error("{path}: cannot read the file: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Not TOML / not JSON.
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// Well-formed, but not a config or policy the linter can read.
    #[error("{path}: {entry}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The entry, e.g. `[[broker]] "x"` or `Statement[0]`.
        entry: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// Reads `path` as text.
fn read(path: &Path) -> Result<String, LintError> {
    std::fs::read_to_string(path).map_err(|source| LintError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Lints the `[[broker]]` and `[[role]]` entries of a tokenmint config
/// file. Only those are read (no App key is needed); `check-config`
/// validates the rest.
pub fn lint_config_file(path: &Path) -> Result<Report, LintError> {
    lint_config_text(&read(path)?, path)
}

/// Lints config text; `path` names the file in messages and the report.
pub fn lint_config_text(text: &str, path: &Path) -> Result<Report, LintError> {
    let findings = config::lint(text, path)?;
    Ok(Report {
        path: path.to_owned(),
        kind: DocumentKind::Config,
        findings,
    })
}

/// Lints an AWS IAM trust-policy JSON file.
pub fn lint_iam_file(path: &Path) -> Result<Report, LintError> {
    lint_iam_text(&read(path)?, path)
}

/// Lints IAM policy text; `path` names the file in messages and the report.
pub fn lint_iam_text(text: &str, path: &Path) -> Result<Report, LintError> {
    let findings = iam::lint(text, path)?;
    Ok(Report {
        path: path.to_owned(),
        kind: DocumentKind::IamPolicy,
        findings,
    })
}

/// Builds a finding of rule `id` with the rule's severity. `fix` defaults
/// to the rule's general fix.
fn finding(
    id: &'static str,
    message: String,
    fix: Option<String>,
    location: Location,
    line: usize,
) -> Finding {
    let rule = rule(id);
    Finding {
        rule_id: id,
        severity: rule.map_or(Severity::High, |r| r.severity),
        message,
        fix: fix.unwrap_or_else(|| rule.map_or_else(String::new, |r| r.fix.to_owned())),
        location,
        line,
        file: None,
    }
}

#[cfg(test)]
mod tests;
