//! The linter's neutral view of claim conditions, shared by configs and IAM policies, and the rules and pattern analysis that work on it.

/// How a condition compares its patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Equality (`claim = "v"`, `StringEquals`).
    Exact,
    /// `*`/`?` wildcards (`like`, `StringLike`).
    Like,
    /// A regex anchored at both ends (`matches`).
    Regex,
}

/// One positive condition on one claim.
#[derive(Debug, Clone)]
pub(super) struct ClaimCond {
    /// The claim name, lower-case for IAM keys (they are case-insensitive).
    pub(super) claim: String,
    /// The key as written (`sub`, `token.actions.githubusercontent.com:sub`).
    pub(super) key: String,
    /// How it compares.
    pub(super) kind: Kind,
    /// The values or patterns, any of which may match.
    pub(super) patterns: Vec<String>,
}

/// A shared rule's hit: rule ID, the claim key it is about (if any), the
/// message, and a specific fix (if any).
pub(super) type Hit = (&'static str, Option<String>, String, Option<String>);

/// Claims whose value starts with the repository owner, and the text before
/// the owner (`sub` is `repo:OWNER/REPO:…`).
const OWNER_BEARING: [(&str, &str); 4] = [
    ("sub", "repo:"),
    ("repository", ""),
    ("workflow_ref", ""),
    ("job_workflow_ref", ""),
];

/// Claims that identify the repository or owner (GitHub, then GitLab).
const IDENTITY: [&str; 13] = [
    "sub",
    "repository",
    "repository_id",
    "repository_owner",
    "repository_owner_id",
    "job_workflow_ref",
    "workflow_ref",
    "enterprise",
    "enterprise_id",
    "project_path",
    "project_id",
    "namespace_path",
    "namespace_id",
];

/// Claims whose values whoever writes or triggers a workflow chooses.
const USER_CONTROLLED: [&str; 5] = ["workflow", "actor", "head_ref", "base_ref", "environment"];

/// Claims that bind a repository for `TM002` (GitLab's project claims too).
const REPOSITORY_BINDING: [&str; 6] = [
    "sub",
    "repository",
    "repository_id",
    "job_workflow_ref",
    "project_path",
    "project_id",
];

fn is_user_controlled(claim: &str) -> bool {
    USER_CONTROLLED.contains(&claim) || claim.starts_with("repo_property_")
}

fn has(conds: &[ClaimCond], claim: &str) -> bool {
    conds.iter().any(|c| c.claim == claim)
}

/// Runs the shared rules on one policy's conditions.
pub(super) fn shared_rules(conds: &[ClaimCond]) -> Vec<Hit> {
    let mut hits = Vec::new();
    crosses_owner_rule(conds, &mut hits);
    if !REPOSITORY_BINDING.iter().any(|c| has(conds, c)) {
        hits.push((
            "TM002",
            None,
            "no condition on sub, repository, repository_id or job_workflow_ref: tokens from every repository the issuer serves can satisfy this policy".to_owned(),
            None,
        ));
    }
    names_without_ids_rule(conds, &mut hits);
    environment_rule(conds, &mut hits);
    runner_rule(conds, &mut hits);
    for c in conds.iter().filter(|c| c.kind == Kind::Like) {
        for p in c.patterns.iter().filter(|p| !p.contains(['*', '?'])) {
            hits.push((
                "TM008",
                Some(c.key.clone()),
                format!(
                    "{} pattern {p:?} has no wildcard, so it is an exact match",
                    c.key
                ),
                Some(format!("write {} = {p:?} (an exact value)", c.key)),
            ));
        }
    }
    let identity = conds.iter().any(|c| IDENTITY.contains(&c.claim.as_str()));
    if !identity {
        let user: Vec<&str> = conds
            .iter()
            .filter(|c| is_user_controlled(&c.claim))
            .map(|c| c.key.as_str())
            .collect();
        if !user.is_empty() {
            hits.push((
                "TM009",
                user.first().map(|k| (*k).to_owned()),
                format!("only user-controlled claims ({}) and no identity claim bind this policy; any repository can produce these values", user.join(", ")),
                None,
            ));
        }
    }
    let caller_bound = [
        "sub",
        "repository",
        "repository_id",
        "repository_owner",
        "repository_owner_id",
        "workflow_ref",
    ]
    .iter()
    .any(|c| has(conds, c));
    if has(conds, "job_workflow_ref") && !caller_bound {
        hits.push((
            "TM012",
            Some(key_of(conds, "job_workflow_ref")),
            "job_workflow_ref is the only repository binding: it names the reusable workflow, not its caller, so any repository calling that workflow is admitted".to_owned(),
            None,
        ));
    }
    hits
}

fn key_of(conds: &[ClaimCond], claim: &str) -> String {
    conds
        .iter()
        .find(|c| c.claim == claim)
        .map_or_else(|| claim.to_owned(), |c| c.key.clone())
}

/// `TM001`: an owner-bearing pattern crosses the owner, and nothing else
/// pins the owner.
fn crosses_owner_rule(conds: &[ClaimCond], hits: &mut Vec<Hit>) {
    if owner_pinned(conds) {
        return;
    }
    for c in conds {
        let Some((_, prefix)) = OWNER_BEARING.iter().find(|(claim, _)| *claim == c.claim) else {
            continue;
        };
        for p in &c.patterns {
            if crosses_owner(c.kind, p, prefix) {
                hits.push((
                    "TM001",
                    Some(c.key.clone()),
                    format!("{} pattern {p:?} can match repositories of any owner (a wildcard or regex class before the owner's '/'), and no other condition pins the owner", c.key),
                    None,
                ));
            }
        }
    }
}

/// Whether some condition limits the owner to values the author wrote.
fn owner_pinned(conds: &[ClaimCond]) -> bool {
    conds.iter().any(|c| match c.claim.as_str() {
        "repository_owner" | "repository_owner_id" | "repository_id" => match c.kind {
            Kind::Exact => true,
            Kind::Like => c.patterns.iter().all(|p| !p.contains(['*', '?'])),
            Kind::Regex => false,
        },
        "sub" | "repository" | "workflow_ref" => {
            let prefix = if c.claim == "sub" { "repo:" } else { "" };
            c.patterns.iter().all(|p| !crosses_owner(c.kind, p, prefix))
        }
        _ => false,
    })
}

/// `TM003`: names bound, no IDs.
fn names_without_ids_rule(conds: &[ClaimCond], hits: &mut Vec<Hit>) {
    if has(conds, "repository_id") || has(conds, "repository_owner_id") {
        return;
    }
    let mut named: Vec<&str> = conds
        .iter()
        .filter(|c| {
            matches!(
                c.claim.as_str(),
                "repository" | "repository_owner" | "workflow_ref"
            )
        })
        .map(|c| c.key.as_str())
        .collect();
    // The immutable sub form `repo:OWNER@ID/REPO@ID:…` carries IDs.
    if let Some(sub) = conds.iter().find(|c| c.claim == "sub") {
        let by_name = sub.patterns.iter().any(|p| {
            p.strip_prefix("repo:")
                .is_some_and(|rest| !rest.split('/').next().unwrap_or_default().contains('@'))
        });
        if by_name {
            named.push(sub.key.as_str());
        }
    }
    if let Some(first) = named.first() {
        hits.push((
            "TM003",
            Some((*first).to_owned()),
            format!("the conditions on {} bind the repository or owner by name, with no repository_id or repository_owner_id condition; a deleted or renamed name can be registered again by someone else", named.join(", ")),
            None,
        ));
    }
}

/// `TM005`: an environment binding.
fn environment_rule(conds: &[ClaimCond], hits: &mut Vec<Hit>) {
    let env = conds.iter().find(|c| c.claim == "environment");
    let sub_env = conds
        .iter()
        .find(|c| c.claim == "sub" && c.patterns.iter().any(|p| p.contains(":environment:")));
    if let Some(c) = env.or(sub_env) {
        hits.push((
            "TM005",
            Some(c.key.clone()),
            format!("{} binds a deployment environment; that is only as strong as the environment's protection rules (an environment that does not exist is created unprotected when a workflow names it)", c.key),
            None,
        ));
    }
}

/// `TM006`: `runner_environment` not pinned to a hosted runner.
fn runner_rule(conds: &[ClaimCond], hits: &mut Vec<Hit>) {
    let pinned = conds.iter().any(|c| {
        c.claim == "runner_environment"
            && c.kind == Kind::Exact
            && c.patterns
                .iter()
                .all(|p| p.ends_with("-hosted") && p != "self-hosted")
    });
    if !pinned {
        hits.push((
            "TM006",
            conds
                .iter()
                .find(|c| c.claim == "runner_environment")
                .map(|c| c.key.clone()),
            "runner_environment is not pinned to github-hosted, so tokens can be minted from self-hosted runners".to_owned(),
            None,
        ));
    }
}

// ------------------------------------------------------------ pattern analysis

/// Whether a pattern for an owner-bearing claim can match values with more
/// than one owner: a wildcard (or, for regexes, a class, `.`, or a
/// quantifier) before the first `/` that follows `prefix`. Conservative:
/// a regex whose shape is unclear (e.g. a group of alternatives) is not
/// flagged, and a pattern that cannot have the prefix is not flagged.
pub(super) fn crosses_owner(kind: Kind, pattern: &str, prefix: &str) -> bool {
    match kind {
        Kind::Exact => false,
        Kind::Like => like_crosses(pattern, prefix),
        Kind::Regex => top_level_alternatives(pattern)
            .iter()
            .any(|alt| regex_crosses(alt, prefix)),
    }
}

fn like_crosses(pattern: &str, prefix: &str) -> bool {
    let mut chars = pattern.chars();
    for want in prefix.chars() {
        match chars.next() {
            Some('*' | '?') => return true,
            Some(c) if c == want => {}
            // Another shape, or too short: cannot be a GitHub subject.
            _ => return false,
        }
    }
    for c in chars {
        match c {
            '/' => return false,
            '*' | '?' => return true,
            _ => {}
        }
    }
    false
}

/// A regex reduced to what owner analysis needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    /// A character that matches itself.
    Lit(char),
    /// Anything else that can match more than one string: `.`, a class,
    /// an escape class (`\w`).
    Wild,
    /// A quantifier (`*`, `+`, `?`, `{n,m}`): it makes the token before it
    /// match more than one string.
    Quant,
    /// Grouping and anchors: `(`, `)`, `|` inside a group, `^`, `$`.
    Neutral,
}

fn tokens(regex: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut chars = regex.chars().peekable();
    while let Some(c) = chars.next() {
        let tok = match c {
            '\\' => match chars.next() {
                Some(e) if e.is_ascii_alphanumeric() => Tok::Wild,
                Some(e) => Tok::Lit(e),
                None => Tok::Neutral,
            },
            '[' => {
                // Skip to the closing bracket (a leading `]` or `^]` is literal).
                let mut first = true;
                while let Some(n) = chars.next() {
                    match n {
                        '\\' => {
                            chars.next();
                        }
                        '^' if first => continue,
                        ']' if !first => break,
                        _ => {}
                    }
                    first = false;
                }
                Tok::Wild
            }
            '{' => {
                for n in chars.by_ref() {
                    if n == '}' {
                        break;
                    }
                }
                Tok::Quant
            }
            '*' | '+' | '?' => Tok::Quant,
            '.' => Tok::Wild,
            '(' => {
                // Skip a group's flags or non-capturing marker: `(?:`, `(?i)`.
                if chars.peek() == Some(&'?') {
                    chars.next();
                    while let Some(n) = chars.peek() {
                        if *n == ':' || *n == ')' {
                            chars.next();
                            break;
                        }
                        chars.next();
                    }
                }
                Tok::Neutral
            }
            ')' | '|' | '^' | '$' => Tok::Neutral,
            other => Tok::Lit(other),
        };
        out.push(tok);
    }
    out
}

fn regex_crosses(alt: &str, prefix: &str) -> bool {
    let toks = tokens(alt);
    let mut it = toks.iter().filter(|t| **t != Tok::Neutral);
    for want in prefix.chars() {
        match it.next() {
            Some(Tok::Wild | Tok::Quant) => return true,
            Some(Tok::Lit(c)) if *c == want => {}
            _ => return false,
        }
    }
    for t in it {
        match t {
            Tok::Lit('/') => return false,
            Tok::Wild | Tok::Quant => return true,
            _ => {}
        }
    }
    // No '/' at all: only a wildcard could reach another owner.
    false
}

/// Splits a regex on `|` outside groups and classes.
fn top_level_alternatives(regex: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let (mut depth, mut in_class, mut escaped) = (0usize, false, false);
    for c in regex.chars() {
        let split = !escaped && !in_class && depth == 0 && c == '|';
        if escaped {
            escaped = false;
        } else {
            match c {
                '\\' => escaped = true,
                '[' => in_class = true,
                ']' => in_class = false,
                '(' if !in_class => depth += 1,
                ')' if !in_class => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        if split {
            out.push(String::new());
        } else if let Some(last) = out.last_mut() {
            last.push(c);
        }
    }
    out
}

/// The literal text a pattern starts with (up to its first wildcard or
/// regex metacharacter).
pub(super) fn literal_prefix(kind: Kind, pattern: &str) -> String {
    match kind {
        Kind::Exact => pattern.to_owned(),
        Kind::Like => pattern
            .chars()
            .take_while(|c| !matches!(c, '*' | '?'))
            .collect(),
        Kind::Regex => {
            let toks = tokens(top_level_alternatives(pattern).first().map_or("", |s| s));
            let mut out = String::new();
            // A literal followed by a quantifier is not certain; drop it.
            for (i, t) in toks.iter().enumerate() {
                match t {
                    Tok::Lit(c) => {
                        if toks.get(i + 1) == Some(&Tok::Quant) {
                            break;
                        }
                        out.push(*c);
                    }
                    Tok::Neutral if i == 0 => {}
                    _ => break,
                }
            }
            out
        }
    }
}
