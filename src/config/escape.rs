//! Java properties escapes: decoding `\uXXXX`, `\t`, `\n`, … as
//! `java.util.Properties.load` does, and encoding keys and values so that
//! Java reads back exactly the string we meant.
//!
//! Files are read as ISO-8859-1, like TorchServe (`Properties.load(InputStream)`):
//! byte `b` is the character U+00`b`. Encoding keeps output ASCII by writing
//! anything outside printable ASCII as `\uXXXX`.

use std::fmt::Write as _;

/// Why an escaped key or value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EscapeError {
    #[error("malformed \\uXXXX escape")]
    MalformedUnicode,
    #[error("\\u escapes form an unpaired UTF-16 surrogate")]
    UnpairedSurrogate,
}

/// Decodes the escapes of one key or value, given as raw ISO-8859-1 bytes of
/// a logical line (continuations already joined).
pub fn unescape(raw: &[u8]) -> Result<String, EscapeError> {
    let mut units: Vec<u16> = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let byte = raw[i];
        i += 1;
        if byte != b'\\' {
            units.push(u16::from(byte));
            continue;
        }
        let Some(&escaped) = raw.get(i) else {
            // A lone trailing backslash: Java drops it (the line reader already
            // treats it as a continuation), so do we.
            break;
        };
        i += 1;
        let unit = match escaped {
            b'u' => {
                let hex = raw.get(i..i + 4).ok_or(EscapeError::MalformedUnicode)?;
                i += 4;
                let text = std::str::from_utf8(hex).map_err(|_| EscapeError::MalformedUnicode)?;
                if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(EscapeError::MalformedUnicode);
                }
                u16::from_str_radix(text, 16).map_err(|_| EscapeError::MalformedUnicode)?
            }
            b't' => u16::from(b'\t'),
            b'r' => u16::from(b'\r'),
            b'n' => u16::from(b'\n'),
            b'f' => 0x0c,
            other => u16::from(other),
        };
        units.push(unit);
    }
    String::from_utf16(&units).map_err(|_| EscapeError::UnpairedSurrogate)
}

/// Where an escaped string will stand, which decides what must be escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// A key: separators (`=`, `:`, whitespace) and a leading `#`/`!` must be escaped.
    Key,
    /// The start of a value: leading whitespace must be escaped, and so must a
    /// leading `=` or `:` (after a whitespace separator Java would take it as
    /// the separator).
    ValueStart,
    /// A continuation line of a value: leading whitespace is dropped by the
    /// reader anyway, so only backslashes and control characters matter.
    ValueContinuation,
}

/// Encodes `text` so that Java reads it back unchanged at `position`.
pub fn escape(text: &str, position: Position) -> String {
    let mut out = String::with_capacity(text.len());
    for (index, ch) in text.chars().enumerate() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{0c}' => out.push_str("\\f"),
            ' ' if position == Position::Key || (index == 0 && position == Position::ValueStart) => out.push_str("\\ "),
            '=' | ':' if position == Position::Key || (index == 0 && position == Position::ValueStart) => {
                out.push('\\');
                out.push(ch);
            }
            '#' | '!' if position == Position::Key && index == 0 => {
                out.push('\\');
                out.push(ch);
            }
            ' '..='~' => out.push(ch),
            _ => {
                let mut units = [0u16; 2];
                for unit in ch.encode_utf16(&mut units) {
                    write!(out, "\\u{unit:04X}").expect("writing to a String cannot fail");
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_java_escapes() {
        assert_eq!(unescape(br"a\tb\nc\\d\:e\=f\ g").unwrap(), "a\tb\nc\\d:e=f g");
        assert_eq!(unescape(br"\u00e9t\u00C9").unwrap(), "étÉ");
        assert_eq!(unescape(br"\q").unwrap(), "q");
        assert_eq!(unescape(b"caf\xe9").unwrap(), "café");
    }

    #[test]
    fn rejects_malformed_unicode_escapes() {
        assert_eq!(unescape(br"\u12"), Err(EscapeError::MalformedUnicode));
        assert_eq!(unescape(br"\u12g4"), Err(EscapeError::MalformedUnicode));
        assert_eq!(unescape(br"\ud800"), Err(EscapeError::UnpairedSurrogate));
    }

    #[test]
    fn surrogate_pairs_decode_to_one_char() {
        assert_eq!(unescape(br"\uD83D\uDE00").unwrap(), "😀");
        assert_eq!(escape("😀", Position::ValueStart), r"\uD83D\uDE00");
    }

    proptest! {
        #[test]
        fn escape_then_unescape_is_identity(text in any::<String>()) {
            for position in [Position::Key, Position::ValueStart, Position::ValueContinuation] {
                let escaped = escape(&text, position);
                prop_assert!(escaped.is_ascii());
                prop_assert_eq!(unescape(escaped.as_bytes()).unwrap(), text.clone());
            }
        }
    }
}
