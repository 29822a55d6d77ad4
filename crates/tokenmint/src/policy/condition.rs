//! One claim's condition (exact values, `like` globs or anchored regexes) and how it is tested and described.

use super::glob::Glob;
use regex::{Regex, RegexBuilder};
use std::fmt;

/// Cap on the compiled size of one `matches` regex, so that a hostile or
/// careless pattern (such as `\w{1000}{1000}`) cannot exhaust memory at load.
pub(super) const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// A `matches` regex, compiled as `^(?:PATTERN)$` so that it must match the
/// whole claim value. Never `^PATTERN$`: with alternation that would let
/// `a|b` match any value starting with `a` (GHSA-mwqh-2vg8-rhj3).
#[derive(Clone)]
pub struct CompiledRegex {
    /// The pattern exactly as configured, for denial reasons and linting.
    source: String,
    /// `source` wrapped in a non-capturing group and anchored at both ends.
    anchored: Regex,
}

/// Why a `matches` regex was refused. Turned into a
/// [`PolicyError`](super::PolicyError) by the compiler, which knows the claim.
#[derive(Debug, Clone)]
pub(super) enum RegexDefect {
    /// The pattern holds a raw control character, which no honest claim
    /// pattern needs and which would make it unreadable in logs. Escapes
    /// such as `\n` or `\x00` (a backslash and a letter) are not control
    /// characters and stay allowed.
    ControlChar {
        /// Byte offset of the character in the pattern.
        offset: usize,
        /// The offending character.
        ch: char,
    },
    /// The pattern does not compile on its own, or is too large.
    Compile(regex::Error),
}

impl From<regex::Error> for RegexDefect {
    fn from(error: regex::Error) -> Self {
        Self::Compile(error)
    }
}

impl CompiledRegex {
    /// Compiles `pattern` for whole-value matching.
    ///
    /// Raw control characters are refused first, as for `like` globs. The
    /// pattern is then compiled on its own. That proves it is balanced,
    /// so wrapping it cannot be escaped: without this step `a)|(?:b` would
    /// become `^(?:a)|(?:b)$`, which accepts anything starting with `a`.
    pub(super) fn new(pattern: &str) -> Result<Self, RegexDefect> {
        if let Some((offset, ch)) = pattern.char_indices().find(|(_, ch)| ch.is_control()) {
            return Err(RegexDefect::ControlChar { offset, ch });
        }
        build(pattern)?;
        let anchored = build(&format!("^(?:{pattern})$"))?;
        Ok(Self {
            source: pattern.to_owned(),
            anchored,
        })
    }

    /// The pattern as configured (without the anchoring this type adds).
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the pattern matches the whole of `text`.
    pub fn is_match(&self, text: &str) -> bool {
        self.anchored.is_match(text)
    }
}

/// Compiles with explicit, conservative options: case-sensitive, `^`/`$`
/// at the ends of the text only, and bounded size.
fn build(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .case_insensitive(false)
        .multi_line(false)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

impl fmt::Debug for CompiledRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CompiledRegex").field(&self.source).finish()
    }
}

/// What one claim must satisfy. Every variant is "any of" its list; the
/// compiler guarantees each list is non-empty, and an empty list (which
/// only hand-built values could hold) satisfies nothing.
#[derive(Clone, Debug)]
pub enum Condition {
    /// The claim text equals one of these strings, byte for byte.
    Exact(Vec<String>),
    /// The claim text matches one of these IAM `StringLike` patterns.
    Like(Vec<Glob>),
    /// The claim text matches one of these regexes, anchored at both ends.
    Matches(Vec<CompiledRegex>),
}

impl Condition {
    /// Whether `text` (a claim's text, see [`crate::oidc::claim_text`])
    /// satisfies this condition.
    pub fn is_satisfied_by(&self, text: &str) -> bool {
        match self {
            Self::Exact(values) => values.iter().any(|v| v.as_str() == text),
            Self::Like(globs) => globs.iter().any(|g| g.is_match(text)),
            Self::Matches(regexes) => regexes.iter().any(|r| r.is_match(text)),
        }
    }

    /// The configured values or patterns, in configuration order.
    pub fn patterns(&self) -> Vec<&str> {
        match self {
            Self::Exact(values) => values.iter().map(String::as_str).collect(),
            Self::Like(globs) => globs.iter().map(Glob::as_str).collect(),
            Self::Matches(regexes) => regexes.iter().map(CompiledRegex::as_str).collect(),
        }
    }

    /// The configuration keyword: `exact` (a plain string or list),
    /// `like` or `matches`.
    pub fn operator(&self) -> &'static str {
        match self {
            Self::Exact(_) => "exact",
            Self::Like(_) => "like",
            Self::Matches(_) => "matches",
        }
    }

    /// What a passing value looks like, for "expected …" texts, e.g.
    /// `one of ["prod"]`.
    pub fn expected(&self) -> String {
        let patterns = self.patterns();
        match self {
            Self::Exact(_) => format!("one of {patterns:?}"),
            Self::Like(_) => format!("a value like {patterns:?}"),
            Self::Matches(_) => format!("a value matching a regex in {patterns:?}"),
        }
    }

    /// The tail of a denial reason for a value that failed, e.g.
    /// `matched none of ["prod"]`.
    pub(super) fn mismatch(&self) -> String {
        let patterns = self.patterns();
        match self {
            Self::Exact(_) => format!("matched none of {patterns:?}"),
            Self::Like(_) => format!("matched no pattern like {patterns:?}"),
            Self::Matches(_) => format!("matched no regex in {patterns:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn re(p: &str) -> CompiledRegex {
        CompiledRegex::new(p).unwrap()
    }

    #[test]
    fn alternation_is_anchored_as_a_group() {
        let r = re("a|b");
        assert!(r.is_match("a"));
        assert!(r.is_match("b"));
        assert!(!r.is_match("ab"));
        assert!(!r.is_match("xa"));
        assert!(!r.is_match("bx"));
        assert!(!r.is_match("axb"));
    }

    #[test]
    fn regex_matches_whole_value_only() {
        let r = re("refs/heads/(main|release/.*)");
        assert!(r.is_match("refs/heads/main"));
        assert!(r.is_match("refs/heads/release/1.2"));
        assert!(!r.is_match("refs/heads/mainline"));
        assert!(!r.is_match("x/refs/heads/main"));
        assert!(!r.is_match("refs/heads/main\n"));
    }

    #[test]
    fn regex_is_case_sensitive() {
        assert!(!re("main").is_match("MAIN"));
    }

    #[test]
    fn inline_flags_cannot_loosen_outer_anchors() {
        // `(?m)` is scoped to the wrapping group, so the outer `$` still
        // means end of text.
        let r = re("(?m)a");
        assert!(!r.is_match("a\nb"));
        let r = re("(?m)a$");
        assert!(!r.is_match("a\nb"));
    }

    #[test]
    fn pattern_cannot_break_out_of_the_group() {
        assert!(CompiledRegex::new("a)|(?:b").is_err());
        assert!(CompiledRegex::new("a)|(b").is_err());
        assert!(CompiledRegex::new("(?x)a #").is_err());
    }

    #[test]
    fn oversized_regex_is_refused() {
        let err = CompiledRegex::new(r"\w{1000}\w{1000}\w{1000}").unwrap_err();
        assert!(
            matches!(
                err,
                RegexDefect::Compile(regex::Error::CompiledTooBig(REGEX_SIZE_LIMIT))
            ),
            "{err:?}"
        );
    }

    #[test]
    fn raw_control_chars_are_refused_but_escapes_are_not() {
        for (pattern, offset, ch) in [
            ("refs/heads/\0main", 11, '\0'),
            ("main\n", 4, '\n'),
            ("a\tb", 1, '\t'),
            ("x\u{7f}", 1, '\u{7f}'),
            ("é\u{85}", 2, '\u{85}'),
        ] {
            let err = CompiledRegex::new(pattern).unwrap_err();
            assert!(
                matches!(err, RegexDefect::ControlChar { offset: o, ch: c } if o == offset && c == ch),
                "{pattern:?}: {err:?}"
            );
        }
        // The two characters `\` `n` are an escape, not a control character.
        let r = re(r"main\n?");
        assert!(r.is_match("main"));
        assert!(r.is_match("main\n"));
        assert!(re(r"a\x00b|\t").is_match("\t"));
    }

    #[test]
    fn regex_source_is_kept_without_anchors() {
        let r = re("a|b");
        assert_eq!(r.as_str(), "a|b");
        assert_eq!(format!("{r:?}"), r#"CompiledRegex("a|b")"#);
    }

    #[test]
    fn exact_is_byte_equality() {
        let c = Condition::Exact(vec!["café".into(), "Main".into()]);
        assert!(c.is_satisfied_by("café"));
        assert!(c.is_satisfied_by("Main"));
        assert!(!c.is_satisfied_by("main"));
        assert!(!c.is_satisfied_by("cafe\u{301}"));
        assert!(!c.is_satisfied_by("Main "));
    }

    #[test]
    fn hand_built_empty_condition_satisfies_nothing() {
        assert!(!Condition::Exact(vec![]).is_satisfied_by(""));
        assert!(!Condition::Like(vec![]).is_satisfied_by(""));
        assert!(!Condition::Matches(vec![]).is_satisfied_by(""));
    }

    #[test]
    fn patterns_operator_and_expected() {
        let c = Condition::Matches(vec![re("x"), re("y|z")]);
        assert_eq!(c.patterns(), vec!["x", "y|z"]);
        assert_eq!(c.operator(), "matches");
        assert_eq!(c.expected(), r#"a value matching a regex in ["x", "y|z"]"#);
        let c = Condition::Exact(vec!["prod".into()]);
        assert_eq!(c.operator(), "exact");
        assert_eq!(c.expected(), r#"one of ["prod"]"#);
    }
}
