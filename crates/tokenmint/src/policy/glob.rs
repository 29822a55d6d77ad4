//! `like` patterns: AWS IAM `StringLike` wildcards (`*` and `?`), compiled once and matched in O(n·m) worst case.

use std::fmt;

/// One compiled element of a [`Glob`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Token {
    /// A character that must appear as is (case-sensitive, no normalisation).
    Literal(char),
    /// `?`: exactly one character (a Unicode scalar value, not a byte).
    AnyOne,
    /// `*`: any run of characters, including the empty run. Consecutive
    /// stars are collapsed at compile time; they mean the same thing.
    AnyRun,
}

/// A compiled `like` pattern with IAM `StringLike` semantics: `*` matches
/// any run of characters (including none), `?` matches exactly one
/// character, everything else matches itself, and the pattern must cover
/// the whole value. There is no escape syntax, so a literal `*` or `?` in a
/// value can only be matched by a wildcard.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    /// The pattern exactly as configured, for denial reasons and linting.
    source: String,
    /// The pattern as the matcher walks it.
    tokens: Vec<Token>,
}

/// Why a `like` pattern was refused. Turned into a
/// [`PolicyError`](super::PolicyError) by the compiler, which knows the claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GlobDefect {
    /// The pattern is the empty string.
    Empty,
    /// The pattern holds a control character, which no honest claim pattern
    /// needs and which would make the pattern unreadable in logs.
    ControlChar {
        /// Byte offset of the character in the pattern.
        offset: usize,
        /// The offending character.
        ch: char,
    },
}

impl Glob {
    /// Compiles a `like` pattern.
    pub(crate) fn new(pattern: &str) -> Result<Self, GlobDefect> {
        if pattern.is_empty() {
            return Err(GlobDefect::Empty);
        }
        let mut tokens = Vec::with_capacity(pattern.len());
        for (offset, ch) in pattern.char_indices() {
            if ch.is_control() {
                return Err(GlobDefect::ControlChar { offset, ch });
            }
            let token = match ch {
                '*' => Token::AnyRun,
                '?' => Token::AnyOne,
                other => Token::Literal(other),
            };
            if token == Token::AnyRun && tokens.last() == Some(&Token::AnyRun) {
                continue;
            }
            tokens.push(token);
        }
        Ok(Self {
            source: pattern.to_owned(),
            tokens,
        })
    }

    /// The pattern as configured.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the pattern matches the whole of `text`.
    ///
    /// Two pointers walk the pattern and the text. On a mismatch the matcher
    /// returns to the most recent `*` and lets it swallow one more
    /// character; earlier stars never need revisiting, because the later
    /// star can absorb anything they could. That bounds the work at
    /// O(len(pattern) · len(text)) with no recursion and no allocation.
    pub fn is_match(&self, text: &str) -> bool {
        // Pattern index and text byte offset (always on a char boundary).
        let mut p = 0;
        let mut t = 0;
        // After the most recent star: the pattern index just past it, and
        // the text offset up to which the star has swallowed characters.
        let mut last_star: Option<(usize, usize)> = None;

        loop {
            let next = text.get(t..).and_then(|rest| rest.chars().next());
            let advanced = match (self.tokens.get(p), next) {
                (Some(Token::AnyRun), _) => {
                    p += 1;
                    last_star = Some((p, t));
                    continue;
                }
                (Some(Token::AnyOne), Some(c)) => Some(c),
                (Some(Token::Literal(want)), Some(c)) if *want == c => Some(c),
                (None, None) => return true,
                _ => None,
            };
            if let Some(c) = advanced {
                p += 1;
                t += c.len_utf8();
                continue;
            }
            // Mismatch: let the last star swallow one more character.
            let Some((star_p, star_t)) = last_star else {
                return false;
            };
            let Some(c) = text.get(star_t..).and_then(|rest| rest.chars().next()) else {
                return false;
            };
            let resumed = star_t + c.len_utf8();
            last_star = Some((star_p, resumed));
            p = star_p;
            t = resumed;
        }
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Glob").field(&self.source).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(p: &str) -> Glob {
        Glob::new(p).unwrap()
    }

    #[test]
    fn literal_is_whole_string_and_case_sensitive() {
        let g = glob("main");
        assert!(g.is_match("main"));
        assert!(!g.is_match("Main"));
        assert!(!g.is_match("mainx"));
        assert!(!g.is_match("xmain"));
        assert!(!g.is_match(""));
    }

    #[test]
    fn star_matches_any_run_including_empty() {
        let g = glob("refs/heads/*");
        assert!(g.is_match("refs/heads/"));
        assert!(g.is_match("refs/heads/main"));
        assert!(g.is_match("refs/heads/a/b/c"));
        assert!(!g.is_match("refs/heads"));
        assert!(!g.is_match("refs/tags/v1"));

        let g = glob("a*b");
        assert!(g.is_match("ab"));
        assert!(g.is_match("axxb"));
        assert!(!g.is_match("axxbc"));

        assert!(glob("*").is_match(""));
        assert!(glob("*").is_match("anything"));
        assert!(glob("**").is_match(""));
    }

    #[test]
    fn star_needs_backtracking() {
        // The first `b` must not be committed to.
        let g = glob("*b*c");
        assert!(g.is_match("abxbyc"));
        assert!(!g.is_match("abxbyd"));
        let g = glob("acme/*@refs/heads/main");
        assert!(g.is_match("acme/app/.github/workflows/x.yml@refs/heads/main"));
        assert!(!g.is_match("acme/app/.github/workflows/x.yml@refs/heads/main2"));
        assert!(g.is_match("acme/x@refs/heads/main@refs/heads/main"));
    }

    #[test]
    fn question_mark_matches_exactly_one_char() {
        let g = glob("v?");
        assert!(g.is_match("v1"));
        assert!(!g.is_match("v"));
        assert!(!g.is_match("v12"));
        let g = glob("a?c");
        assert!(g.is_match("abc"));
        assert!(!g.is_match("ac"));
    }

    #[test]
    fn question_mark_matches_one_multibyte_char() {
        let g = glob("caf?");
        assert!(g.is_match("café"));
        assert!(g.is_match("caf🦀"));
        // Two characters, even though `é` is two bytes.
        assert!(!g.is_match("cafée"));
        let g = glob("??");
        assert!(g.is_match("éé"));
        assert!(!g.is_match("é"));
        let g = glob("*é?");
        assert!(g.is_match("xxé🦀"));
        assert!(!g.is_match("xxé"));
    }

    #[test]
    fn multibyte_literals_compare_by_char() {
        assert!(glob("é*").is_match("été"));
        // Decomposed `e` + combining acute is a different string.
        assert!(!glob("é").is_match("e\u{301}"));
    }

    #[test]
    fn wildcards_in_text_are_not_special() {
        assert!(!glob("abc").is_match("*"));
        assert!(!glob("a?c").is_match("a"));
        assert!(glob("a*").is_match("a*"));
    }

    #[test]
    fn pathological_pattern_is_correct() {
        let g = glob("*a*a*a*a*a*a*a*a*b");
        let long = "a".repeat(20_000);
        assert!(!g.is_match(&long));
        let with_b = format!("{long}b");
        assert!(g.is_match(&with_b));
        let g = glob("*?*?*?*?*?*x");
        assert!(!g.is_match(&long));
    }

    #[test]
    fn empty_and_control_chars_are_refused() {
        assert_eq!(Glob::new(""), Err(GlobDefect::Empty));
        assert_eq!(
            Glob::new("ab\ncd"),
            Err(GlobDefect::ControlChar {
                offset: 2,
                ch: '\n'
            })
        );
        assert_eq!(
            Glob::new("é\u{7f}"),
            Err(GlobDefect::ControlChar {
                offset: 2,
                ch: '\u{7f}'
            })
        );
        assert!(matches!(
            Glob::new("\u{85}"),
            Err(GlobDefect::ControlChar { .. })
        ));
    }

    #[test]
    fn source_is_kept_verbatim() {
        let g = glob("a**b");
        assert_eq!(g.as_str(), "a**b");
        assert_eq!(format!("{g:?}"), r#"Glob("a**b")"#);
    }
}
