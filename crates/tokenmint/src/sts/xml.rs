//! The STS Query protocol's XML: escaping, and the success and error documents, every value escaped.

use std::fmt::Write as _;

/// The namespace every STS response carries.
pub(crate) const NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// Escapes `text` for XML element content and attribute values: `&`, `<`,
/// `>`, `"`, `'` and `\r` become references, and characters XML 1.0 cannot
/// carry at all (C0 controls other than tab and newline, U+FFFE, U+FFFF)
/// become U+FFFD, so no caller-supplied value can break the document.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A small XML writer: elements nest, text is always escaped.
#[derive(Debug, Default)]
pub(crate) struct Xml {
    out: String,
}

impl Xml {
    /// A document whose root element `root` carries the STS namespace.
    pub(crate) fn document(root: &str) -> Self {
        let mut xml = Self::default();
        let _ = write!(xml.out, "<{root} xmlns=\"{}\">", escape(NAMESPACE));
        xml
    }

    /// Opens `<tag>`.
    pub(crate) fn open(&mut self, tag: &str) -> &mut Self {
        let _ = write!(self.out, "<{tag}>");
        self
    }

    /// Closes `</tag>`.
    pub(crate) fn close(&mut self, tag: &str) -> &mut Self {
        let _ = write!(self.out, "</{tag}>");
        self
    }

    /// `<tag>escaped text</tag>`.
    pub(crate) fn text(&mut self, tag: &str, text: &str) -> &mut Self {
        let _ = write!(self.out, "<{tag}>{}</{tag}>", escape(text));
        self
    }

    /// Closes the root and returns the document.
    pub(crate) fn finish(mut self, root: &str) -> String {
        self.close(root);
        self.out
    }
}

/// `<ErrorResponse>` with `Type`, `Code`, `Message` and `RequestId`.
pub(crate) fn error_document(kind: &str, code: &str, message: &str, request_id: &str) -> String {
    let mut xml = Xml::document("ErrorResponse");
    xml.open("Error")
        .text("Type", kind)
        .text("Code", code)
        .text("Message", message)
        .close("Error")
        .text("RequestId", request_id);
    xml.finish("ErrorResponse")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_quotes_and_controls() {
        assert_eq!(
            escape(r#"<a href="x">&'b'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;b&apos;&lt;/a&gt;"
        );
        assert_eq!(escape("a\tb\nc\rd"), "a\tb\nc&#13;d");
        assert_eq!(
            escape("a\u{0}b\u{1b}c\u{FFFF}"),
            "a\u{FFFD}b\u{FFFD}c\u{FFFD}"
        );
        assert_eq!(
            escape("repo:acme/app:ref:refs/heads/main"),
            "repo:acme/app:ref:refs/heads/main"
        );
        assert_eq!(escape("ünïcødé ✓"), "ünïcødé ✓");
    }

    #[test]
    fn every_value_in_a_document_is_escaped() {
        let doc = error_document("Sender", "AccessDenied", "</Message><Injected/>", "r&1");
        assert!(!doc.contains("<Injected/>"), "{doc}");
        assert!(
            doc.contains("<Message>&lt;/Message&gt;&lt;Injected/&gt;</Message>"),
            "{doc}"
        );
        assert!(doc.contains("<RequestId>r&amp;1</RequestId>"), "{doc}");
        assert!(doc.starts_with(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>AccessDenied</Code>"
        ));
        assert!(doc.ends_with("</ErrorResponse>"));
    }
}
