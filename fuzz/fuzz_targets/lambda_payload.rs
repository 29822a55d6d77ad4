//! Fuzz target for the Lambda invoke-mode payload rule: accepted exactly when the payload is UTF-8 and, trimmed of Unicode White_Space (an explicit code-point list here), empty or `null`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenmint::lambda::payload::accepts;

/// Unicode's White_Space property (PropList.txt), written out so the check
/// does not share `char::is_whitespace` with the code under test.
fn white_space(c: char) -> bool {
    matches!(
        c as u32,
        0x09..=0x0D
            | 0x20
            | 0x85
            | 0xA0
            | 0x1680
            | 0x2000..=0x200A
            | 0x2028
            | 0x2029
            | 0x202F
            | 0x205F
            | 0x3000
    )
}

fuzz_target!(|data: &[u8]| {
    let expected = match std::str::from_utf8(data) {
        Ok(text) => {
            let trimmed = text.trim_matches(white_space);
            trimmed.is_empty() || trimmed == "null"
        }
        Err(_) => false,
    };
    assert_eq!(accepts(data), expected, "payload {data:?}");
});
