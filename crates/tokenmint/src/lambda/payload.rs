//! The invoke-mode payload rule: only an empty or literal `null` payload (surrounding Unicode whitespace allowed) is accepted.

/// The error message for every other payload, exactly as github-token-broker words it.
pub const REJECTED_PAYLOAD: &str = "github-token-broker does not accept invocation input";

/// Whether `payload` is acceptable: after trimming Unicode whitespace
/// (Rust's `char::is_whitespace`, the same set as Go's `unicode.IsSpace`)
/// it is empty or exactly `null`. Bytes that are not UTF-8 are refused, as
/// are `Null`, `{}`, `[]`, `"x"` and `null` with anything after it (even a NUL).
pub fn accepts(payload: &[u8]) -> bool {
    match std::str::from_utf8(payload) {
        Ok(text) => matches!(text.trim(), "" | "null"),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::accepts;

    #[test]
    fn accepts_empty_and_null_with_unicode_whitespace() {
        for ok in [
            &b""[..],
            b"null",
            b"  null\n",
            b"\t\r\n",
            "\u{a0}\u{2003}null\u{3000}\u{85}".as_bytes(),
            "\u{2028}".as_bytes(),
        ] {
            assert!(accepts(ok), "{ok:?} should be accepted");
        }
    }

    #[test]
    fn rejects_every_other_shape() {
        for bad in [
            &b"{}"[..],
            b"[]",
            b"\"x\"",
            b"Null",
            b"NULL",
            b"null\0",
            b"null null",
            b"nul",
            b"nullx",
            b"0",
            b"false",
            b"\"\"",
            b"\xff",
            b"null\xff",
            "\u{200b}null".as_bytes(), // zero-width space is not White_Space
            "\u{feff}null".as_bytes(), // nor is a byte-order mark
        ] {
            assert!(!accepts(bad), "{bad:?} should be rejected");
        }
    }
}
