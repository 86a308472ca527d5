//! Lossless reading and editing of Java `.properties` files (TorchServe's
//! `config.properties`).
//!
//! The document keeps the file's exact bytes. Parsing follows
//! `java.util.Properties.load(InputStream)`: ISO-8859-1, `#`/`!` comments,
//! `=`, `:` or whitespace separators, backslash continuations (leading
//! whitespace of a continuation line is dropped), escapes, and duplicate keys
//! where the last one wins. An edit replaces only the lines of the entry it
//! touches; every other byte stays as it was.
//!
//! Why not the `java-properties` crate for writing: its writer renders a whole
//! map, so comments, order, separators and continuation layout would be lost.
//! It is a good reader, and the tests cross-check our parser against it.

use std::ops::Range;

use super::escape::{escape, unescape, EscapeError, Position};

/// One key/value entry: its decoded key and value, and where it lies in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    /// 1-based number of the natural line the entry starts on.
    pub line: usize,
    /// Bytes of the natural lines the entry spans, terminators included.
    span: Range<usize>,
    /// Bytes of the first line up to where the raw value begins (indentation,
    /// key and separator), when the value begins on the first line.
    prefix: Option<Range<usize>>,
    /// Whether anything separates key and value (a bare key has nothing).
    has_separator: bool,
}

/// A parse failure, with the 1-based line it happened on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {error}")]
pub struct ParseError {
    pub line: usize,
    pub error: EscapeError,
}

/// Why [`Properties::set_raw_value`] left the document as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RawEditError {
    #[error("no entry for '{key}' whose value begins on its first line, after a separator")]
    NoRawValue { key: String },
    #[error("the edited raw value of '{key}' does not parse: {error}")]
    Parse { key: String, error: ParseError },
    #[error("the edited raw value of '{key}' would change other entries")]
    Reshaped { key: String },
}

/// A `.properties` document: the exact bytes and the entries found in them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Properties {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
}

fn is_blank(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | 0x0c)
}

fn is_eol(byte: u8) -> bool {
    matches!(byte, b'\n' | b'\r')
}

/// Index of the first `\r` or `\n` at or after `from`, or the end.
fn line_end(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|&b| is_eol(b))
        .map_or(bytes.len(), |i| from + i)
}

/// Index just past the terminator starting at `eol` (`\r\n` counts as one).
fn after_terminator(bytes: &[u8], eol: usize) -> usize {
    match bytes.get(eol) {
        Some(b'\r') if bytes.get(eol + 1) == Some(&b'\n') => eol + 2,
        Some(b'\r' | b'\n') => eol + 1,
        _ => eol,
    }
}

fn skip_blanks(bytes: &[u8], mut at: usize) -> usize {
    while at < bytes.len() && is_blank(bytes[at]) {
        at += 1;
    }
    at
}

/// A logical line: the joined content bytes, and where its first segment lies.
struct LogicalLine {
    content: Vec<u8>,
    first_segment: Range<usize>,
    end: usize,
    natural_lines: usize,
}

/// Reads the logical line whose first content byte is at `start`, as Java's
/// `LineReader` does: an odd number of trailing backslashes continues it.
fn read_logical_line(bytes: &[u8], start: usize) -> LogicalLine {
    let mut content = Vec::new();
    let mut segment_start = start;
    let mut first_segment = None;
    let mut natural_lines = 1;
    loop {
        let eol = line_end(bytes, segment_start);
        let segment = &bytes[segment_start..eol];
        let trailing = segment.iter().rev().take_while(|&&b| b == b'\\').count();
        let continues = trailing % 2 == 1;
        let kept = if continues {
            &segment[..segment.len() - 1]
        } else {
            segment
        };
        first_segment.get_or_insert(segment_start..segment_start + kept.len());
        content.extend_from_slice(kept);
        let next = after_terminator(bytes, eol);
        if !continues || next == bytes.len() {
            return LogicalLine {
                content,
                first_segment: first_segment.expect("set on the first segment"),
                end: next,
                natural_lines,
            };
        }
        natural_lines += 1;
        let resume = skip_blanks(bytes, next);
        if resume == bytes.len() || is_eol(bytes[resume]) {
            // An empty continuation line ends the logical line; it belongs to it.
            return LogicalLine {
                content,
                first_segment: first_segment.expect("set on the first segment"),
                end: after_terminator(bytes, resume),
                natural_lines,
            };
        }
        segment_start = resume;
    }
}

/// Splits a logical line into raw key and raw value, as `Properties.load0` does.
/// Returns the key's end and the value's start within `content`.
fn split_key_value(content: &[u8]) -> (usize, usize) {
    let mut key_end = 0;
    let mut value_start = content.len();
    let mut has_separator = false;
    let mut preceding_backslash = false;
    while key_end < content.len() {
        let byte = content[key_end];
        if (byte == b'=' || byte == b':') && !preceding_backslash {
            value_start = key_end + 1;
            has_separator = true;
            break;
        }
        if is_blank(byte) && !preceding_backslash {
            value_start = key_end + 1;
            break;
        }
        preceding_backslash = byte == b'\\' && !preceding_backslash;
        key_end += 1;
    }
    while value_start < content.len() {
        let byte = content[value_start];
        if !is_blank(byte) {
            if !has_separator && (byte == b'=' || byte == b':') {
                has_separator = true;
            } else {
                break;
            }
        }
        value_start += 1;
    }
    (key_end, value_start)
}

impl Entry {
    /// The bytes of the natural lines this entry spans, terminators included.
    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }
}

impl Properties {
    /// Parses `bytes`; fails only on malformed escapes.
    pub fn parse(bytes: Vec<u8>) -> Result<Self, ParseError> {
        let entries = parse_entries(&bytes)?;
        Ok(Self { bytes, entries })
    }

    /// The exact bytes of the document.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Every entry in file order, duplicates included.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry that wins for `key` (the last one).
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().rev().find(|entry| entry.key == key)
    }

    /// The value Java would see for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entry(key).map(|entry| entry.value.as_str())
    }

    /// The effective key/value pairs, last duplicate winning, in order of the
    /// winning entries.
    pub fn effective(&self) -> Vec<(&str, &str)> {
        let mut seen = std::collections::HashSet::new();
        let mut pairs: Vec<(&str, &str)> = self
            .entries
            .iter()
            .rev()
            .filter(|entry| seen.insert(entry.key.as_str()))
            .map(|entry| (entry.key.as_str(), entry.value.as_str()))
            .collect();
        pairs.reverse();
        pairs
    }

    /// Sets `key` to `value` on one line. An existing entry is rewritten in
    /// place, keeping its indentation, key spelling and separator; otherwise
    /// the entry is appended.
    pub fn set(&mut self, key: &str, value: &str) {
        self.set_lines(key, &[value.to_string()]);
    }

    /// Sets `key` to the concatenation of `lines`, written as one natural
    /// line per element joined by backslash continuations. Leading
    /// whitespace of later lines is layout only (Java drops it on reading).
    pub fn set_lines(&mut self, key: &str, lines: &[String]) {
        let eol = self.line_terminator();
        let mut rendered_value = String::new();
        for (index, line) in lines.iter().enumerate() {
            if index == 0 {
                rendered_value.push_str(&escape(line, Position::ValueStart));
                continue;
            }
            rendered_value.push('\\');
            rendered_value.push_str(eol);
            let indent_len = line.len() - line.trim_start_matches(' ').len();
            rendered_value.push_str(&line[..indent_len]);
            rendered_value.push_str(&escape(&line[indent_len..], Position::ValueContinuation));
        }
        match self.entry(key).cloned() {
            Some(entry) => {
                let mut replacement = match &entry.prefix {
                    Some(prefix) if entry.has_separator => self.bytes[prefix.clone()].to_vec(),
                    Some(prefix) => {
                        let mut bytes = self.bytes[prefix.clone()].to_vec();
                        bytes.push(b'=');
                        bytes
                    }
                    None => format!("{}=", escape(key, Position::Key)).into_bytes(),
                };
                replacement.extend_from_slice(rendered_value.as_bytes());
                replacement.extend_from_slice(self.terminator_of(&entry));
                self.splice(entry.span.clone(), &replacement);
            }
            None => {
                let mut appended = Vec::new();
                if self.bytes.last().is_some_and(|&b| !is_eol(b)) {
                    appended.extend_from_slice(eol.as_bytes());
                }
                if self.ends_in_open_continuation() {
                    // An empty line ends the continued entry, as Java reads it.
                    appended.extend_from_slice(eol.as_bytes());
                }
                appended.extend_from_slice(escape(key, Position::Key).as_bytes());
                appended.push(b'=');
                appended.extend_from_slice(rendered_value.as_bytes());
                appended.extend_from_slice(eol.as_bytes());
                let end = self.bytes.len();
                self.splice(end..end, &appended);
            }
        }
    }

    /// Removes every entry for `key`; returns whether there was one.
    pub fn remove(&mut self, key: &str) -> bool {
        let spans: Vec<Range<usize>> = self
            .entries
            .iter()
            .filter(|entry| entry.key == key)
            .map(|entry| entry.span.clone())
            .collect();
        for span in spans.iter().rev() {
            self.splice(span.clone(), &[]);
        }
        !spans.is_empty()
    }

    /// The raw bytes of `key`'s value as the file holds them: from the end
    /// of its key and separator to the end of its last natural line, escapes
    /// and continuations (`\` + line end + indentation) included, the final
    /// line terminator excluded. `None` when there is no such entry, or its
    /// value does not begin on its first line after a separator.
    pub(crate) fn raw_value(&self, key: &str) -> Option<&[u8]> {
        let entry = self.entry(key)?;
        Some(&self.bytes[self.raw_value_range(entry)?])
    }

    /// Replaces the bytes [`Properties::raw_value`] returns for `key` by
    /// `raw` and re-parses. The edit must change that value only: if the
    /// document would not parse, or other entries would come or go or change
    /// value, the document is left as it was.
    pub(crate) fn set_raw_value(&mut self, key: &str, raw: &[u8]) -> Result<(), RawEditError> {
        let no_raw_value = || RawEditError::NoRawValue { key: key.to_string() };
        let index = self
            .entries
            .iter()
            .rposition(|entry| entry.key == key)
            .ok_or_else(no_raw_value)?;
        let range = self.raw_value_range(&self.entries[index]).ok_or_else(no_raw_value)?;
        let mut bytes = self.bytes.clone();
        bytes.splice(range, raw.iter().copied());
        let entries = parse_entries(&bytes).map_err(|error| RawEditError::Parse {
            key: key.to_string(),
            error,
        })?;
        let others_kept = entries.len() == self.entries.len()
            && entries
                .iter()
                .zip(&self.entries)
                .enumerate()
                .all(|(i, (new, old))| new.key == old.key && (i == index || new.value == old.value));
        if !others_kept {
            return Err(RawEditError::Reshaped { key: key.to_string() });
        }
        self.bytes = bytes;
        self.entries = entries;
        Ok(())
    }

    /// Where `entry`'s raw value lies (see [`Properties::raw_value`]).
    fn raw_value_range(&self, entry: &Entry) -> Option<Range<usize>> {
        let prefix = entry.prefix.as_ref().filter(|_| entry.has_separator)?;
        let span = &self.bytes[entry.span.clone()];
        let terminator = if span.ends_with(b"\r\n") {
            2
        } else {
            usize::from(span.last().is_some_and(|&b| is_eol(b)))
        };
        let end = entry.span.end - terminator;
        (prefix.end <= end).then_some(prefix.end..end)
    }

    /// Whether the file ends inside an entry whose last line ends in a
    /// continuation backslash: a line appended after it would be read as
    /// part of that entry.
    fn ends_in_open_continuation(&self) -> bool {
        let reaches_end = self.entries.last().is_some_and(|e| e.span.end == self.bytes.len());
        if !reaches_end {
            return false;
        }
        let mut end = self.bytes.len();
        if self.bytes[..end].ends_with(b"\r\n") {
            end -= 2;
        } else if self.bytes[..end].last().is_some_and(|&b| is_eol(b)) {
            end -= 1;
        }
        self.bytes[..end].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1
    }

    /// The terminator this file uses: that of its first line, else `\n`.
    fn line_terminator(&self) -> &'static str {
        let eol = line_end(&self.bytes, 0);
        match (self.bytes.get(eol), self.bytes.get(eol + 1)) {
            (Some(b'\r'), Some(b'\n')) => "\r\n",
            (Some(b'\r'), _) => "\r",
            _ => "\n",
        }
    }

    /// The terminator that ends `entry`'s last natural line (empty at EOF).
    fn terminator_of(&self, entry: &Entry) -> &[u8] {
        let span = &self.bytes[entry.span.clone()];
        let start = span.iter().rposition(|&b| !is_eol(b)).map_or(0, |i| i + 1);
        // At most one terminator: an entry may end with an empty continuation line.
        let terminator = &span[start..];
        let one = if terminator.starts_with(b"\r\n") {
            2
        } else {
            terminator.len().min(1)
        };
        &terminator[..one]
    }

    fn splice(&mut self, span: Range<usize>, replacement: &[u8]) {
        self.bytes.splice(span, replacement.iter().copied());
        self.entries = parse_entries(&self.bytes)
            .expect("an edit only writes escapes that parse, and keeps other lines as they were");
    }
}

fn parse_entries(bytes: &[u8]) -> Result<Vec<Entry>, ParseError> {
    let mut entries = Vec::new();
    let mut at = 0;
    let mut line = 1;
    while at < bytes.len() {
        let start = at;
        let first = skip_blanks(bytes, at);
        if first == bytes.len() {
            break;
        }
        if is_eol(bytes[first]) || bytes[first] == b'#' || bytes[first] == b'!' {
            at = after_terminator(bytes, line_end(bytes, first));
            line += 1;
            continue;
        }
        let logical = read_logical_line(bytes, first);
        let (key_end, value_start) = split_key_value(&logical.content);
        let key = unescape(&logical.content[..key_end]).map_err(|error| ParseError { line, error })?;
        let value = unescape(&logical.content[value_start..]).map_err(|error| ParseError { line, error })?;
        let first_len = logical.first_segment.len();
        let prefix = (value_start <= first_len).then(|| start..logical.first_segment.start + value_start);
        let has_separator = value_start > key_end;
        entries.push(Entry {
            key,
            value,
            line,
            span: start..logical.end,
            prefix,
            has_separator,
        });
        line += logical.natural_lines;
        at = logical.end;
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Properties {
        Properties::parse(text.as_bytes().to_vec()).unwrap()
    }

    fn text(props: &Properties) -> &str {
        std::str::from_utf8(props.as_bytes()).unwrap()
    }

    #[test]
    fn reads_separators_comments_and_continuations() {
        let props =
            parse("# comment\n! bang\n  a = 1\nb:2\nc 3\nd\\\n   e\\\n f = g\n  \nh=\\\n\nlast = wins\nlast = yes");
        assert_eq!(
            props.effective(),
            vec![
                ("a", "1"),
                ("b", "2"),
                ("c", "3"),
                ("def", "g"),
                ("h", ""),
                ("last", "yes")
            ]
        );
        assert_eq!(props.entry("def").unwrap().line, 6);
        assert_eq!(props.entry("last").unwrap().line, 13);
    }

    #[test]
    fn comment_lines_never_continue() {
        let props = parse("# not continued \\\nkey=value\n");
        assert_eq!(props.get("key"), Some("value"));
    }

    #[test]
    fn set_keeps_separator_and_other_lines() {
        let mut props = parse("# head\r\n  a : 1\r\nb=2\r\n");
        props.set("a", "42");
        assert_eq!(text(&props), "# head\r\n  a : 42\r\nb=2\r\n");
        props.set("new key", " x");
        assert_eq!(text(&props), "# head\r\n  a : 42\r\nb=2\r\nnew\\ key=\\ x\r\n");
        assert_eq!(props.get("new key"), Some(" x"));
    }

    #[test]
    fn set_rewrites_a_continued_entry_and_the_last_duplicate() {
        let mut props = parse("x=1\nmodels={\\\n  \"a\": 1\\\n}\nx=2\ntail\n");
        props.set_lines("models", &["{".into(), "  \"b\": 2".into(), "}".into()]);
        props.set("x", "3");
        assert_eq!(text(&props), "x=1\nmodels={\\\n  \"b\": 2\\\n}\nx=3\ntail\n");
        assert_eq!(props.get("models"), Some("{\"b\": 2}"));
    }

    #[test]
    fn appends_after_a_last_line_without_terminator() {
        let mut props = parse("a=1");
        props.set("b", "2");
        assert_eq!(text(&props), "a=1\nb=2\n");
    }

    #[test]
    fn appends_after_an_open_continuation_at_eof() {
        for text in ["a=tail\\", "a=tail\\\r\n"] {
            let mut props = parse(text);
            props.set("b", "2");
            assert_eq!(props.effective(), vec![("a", "tail"), ("b", "2")], "{text:?}");
        }
    }

    #[test]
    fn remove_deletes_every_duplicate() {
        let mut props = parse("a=1\nb=2\na=3\\\n  more\nc=4\n");
        assert!(props.remove("a"));
        assert_eq!(text(&props), "b=2\nc=4\n");
        assert!(!props.remove("a"));
    }

    #[test]
    fn raw_value_is_the_value_as_written() {
        let props = parse("a = x\\\r\n  y\r\nb:{}\\\n\nc\nd\\\n  =1\n");
        assert_eq!(props.raw_value("a"), Some(&b"x\\\r\n  y"[..]));
        assert_eq!(props.raw_value("b"), Some(&b"{}\\\n"[..]));
        // a bare key, and a value that begins on a later line
        assert_eq!(props.raw_value("c"), None);
        assert_eq!(props.raw_value("d"), None);
        assert_eq!(props.raw_value("missing"), None);
    }

    #[test]
    fn set_raw_value_changes_only_that_value() {
        let mut props = parse("a=1\nb = x\\\n  y\r\nc=3");
        props.set_raw_value("b", b"x\\\n  z").unwrap();
        assert_eq!(text(&props), "a=1\nb = x\\\n  z\r\nc=3");
        assert_eq!(props.get("b"), Some("xz"));
        for (raw, reshapes) in [(&b"1\nd=4"[..], true), (b"\\u12", false)] {
            let before = props.clone();
            let error = props.set_raw_value("b", raw).unwrap_err();
            assert_eq!(matches!(error, RawEditError::Reshaped { .. }), reshapes, "{error}");
            assert_eq!(props, before);
        }
        assert!(matches!(
            props.set_raw_value("missing", b"1"),
            Err(RawEditError::NoRawValue { .. })
        ));
    }

    #[test]
    fn malformed_escape_names_its_line() {
        let error = Properties::parse(b"a=1\nb=\\u12\n".to_vec()).unwrap_err();
        assert_eq!(error.line, 2);
    }
}
