//! Untrusted text made safe for messages, logs and audit rows: cutting at a character boundary, and quoting with escapes.

/// The longest prefix of `s` that is at most `max` bytes and ends on a
/// character boundary.
pub(crate) fn head(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// `s` cut to `max` bytes with a trailing `…` when cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    let h = head(s, max);
    if h.len() == s.len() {
        s.to_owned()
    } else {
        format!("{h}…")
    }
}

/// `s` cut to `max` bytes, then quoted with Rust's debug escaping (quotes,
/// backslashes, control, bidi and other invisible characters escaped). A cut
/// is marked by `…` outside the quotes, so it cannot be confused with a `…`
/// in the value itself.
pub(crate) fn quote(s: &str, max: usize) -> String {
    let h = head(s, max);
    if h.len() == s.len() {
        format!("{s:?}")
    } else {
        format!("{h:?}…")
    }
}

/// Caller-controlled text made safe for logs: control characters escaped,
/// length bounded at a char boundary.
pub(crate) fn printable(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max) + 8);
    for c in s.chars() {
        if out.len() >= max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_char_boundaries() {
        assert_eq!(head("abc", 5), "abc");
        assert_eq!(head("ééé", 3), "é");
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(quote("a\"b\n", 10), r#""a\"b\n""#);
        assert_eq!(quote("abcdef", 3), r#""abc"…"#);
    }

    #[test]
    fn printable_escapes_and_bounds() {
        assert_eq!(printable("a\nb", 10), "a\\nb");
        assert_eq!(printable("abcdef", 3), "abc…");
        assert_eq!(printable("ééé", 3), "éé…");
    }
}
