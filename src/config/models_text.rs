//! Lossless edits of the text of `models={…}`: a field of one model's default
//! version is set by splicing over that field's value in the entry's raw
//! bytes, so the JSON keeps the user's layout (indentation, key order,
//! spacing, continuation lines) and a diff of the file shows one line per
//! change.
//!
//! Owns: a small scanner over the raw value (a backslash, a line end and the
//! next line's indentation count as whitespace outside JSON strings) that
//! finds `models.<model>.<version>.<field>`, and [`write_models`], which
//! `assignment::apply_assignments` calls to write its edits back.
//!
//! The scanner gives up on anything it does not handle simply: a properties
//! escape (`\:`, `\u0041`, `\\`), a continuation inside a JSON string, a
//! duplicate key on the way, a field to add to a version object with fewer
//! than two members (there is no layout to copy), or a value that would need
//! escaping. Then, and whenever the spliced document does not decode to
//! exactly the structural edit, the whole value is re-rendered pretty-printed.

use std::ops::Range;

use serde_json::Value;

use super::models::{ModelField, Models, MODELS_KEY};
use super::properties::Properties;

/// One field an assignment set, and the version it went to.
#[derive(Debug, Clone)]
pub(super) struct FieldEdit {
    pub model: String,
    /// The model's default version when the edit was made.
    pub version: String,
    pub field: ModelField,
    pub value: Value,
}

/// Writes `models` (the parsed `models=` object with `edits` applied, in
/// order) back to `props`: spliced into the entry's raw text when that
/// decodes to exactly `models`, otherwise re-rendered.
pub(super) fn write_models(props: &mut Properties, models: &Models, edits: &[FieldEdit]) {
    match splice_edits(props, models, edits) {
        Some(spliced) => *props = spliced,
        None => {
            tracing::debug!("models= cannot be edited in place; writing it re-rendered");
            props.set_lines(MODELS_KEY, &models.to_lines());
        }
    }
}

/// `props` with `edits` spliced into the raw `models=` text, if every edit
/// could be spliced and the result decodes to exactly `models`.
fn splice_edits(props: &Properties, models: &Models, edits: &[FieldEdit]) -> Option<Properties> {
    let mut raw = props.raw_value(MODELS_KEY)?.to_vec();
    for edit in edits {
        raw = set_field(&raw, edit)?;
    }
    let mut spliced = props.clone();
    spliced.set_raw_value(MODELS_KEY, &raw).ok()?;
    let decoded = Models::parse(spliced.get(MODELS_KEY)?).ok()?;
    (decoded.to_lines() == models.to_lines()).then_some(spliced)
}

/// The raw `models=` text with `edit` spliced in, or `None` where the text
/// is not simple enough to edit in place.
fn set_field(raw: &[u8], edit: &FieldEdit) -> Option<Vec<u8>> {
    let literal = plain_literal(&edit.value)?;
    let root = Scanner::new(raw, 0).document()?;
    let versions = Scanner::new(raw, unique(&root, &edit.model)?.value.start).object()?;
    let fields = Scanner::new(raw, unique(&versions, &edit.version)?.value.start).object()?;
    let splice = field_splice(raw, &fields, edit.field.name(), &literal)?;
    let mut edited = raw.to_vec();
    edited.splice(splice.range, splice.text);
    Some(edited)
}

/// The JSON text of `value`, if it can stand in the raw text as it is:
/// printable ASCII without backslashes (which the properties reader would
/// take as escapes).
fn plain_literal(value: &Value) -> Option<String> {
    let text = serde_json::to_string(value).ok()?;
    text.bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'\\')
        .then_some(text)
}

/// Bytes of the raw text to replace, and what to put there.
struct Splice {
    range: Range<usize>,
    text: Vec<u8>,
}

/// Replaces the value of `field` if the object has it once; adds it after
/// the last member if it has none.
fn field_splice(raw: &[u8], fields: &[Member], field: &str, literal: &str) -> Option<Splice> {
    let mut matching = fields.iter().filter(|member| member.name == field);
    match (matching.next(), matching.next()) {
        (Some(member), None) => Some(Splice {
            range: member.value.clone(),
            text: literal.as_bytes().to_vec(),
        }),
        (None, _) => append_splice(raw, fields, field, literal),
        (Some(_), Some(_)) => None,
    }
}

/// Adds `"field": literal` after the last member, copying the layout between
/// the previous two members (`,`, line break, indentation) and the last
/// member's spacing around `:`.
fn append_splice(raw: &[u8], fields: &[Member], field: &str, literal: &str) -> Option<Splice> {
    let [.., previous, last] = fields else {
        return None;
    };
    let mut text = raw[previous.value.end..last.key.start].to_vec();
    text.push(b'"');
    text.extend_from_slice(field.as_bytes());
    text.push(b'"');
    text.extend_from_slice(&raw[last.key.end..last.value.start]);
    text.extend_from_slice(literal.as_bytes());
    let at = last.value.end;
    Some(Splice { range: at..at, text })
}

/// The member whose key is `key`, if exactly one has it.
fn unique<'m>(members: &'m [Member], key: &str) -> Option<&'m Member> {
    let mut matching = members.iter().filter(|member| member.name == key);
    match (matching.next(), matching.next()) {
        (Some(member), None) => Some(member),
        _ => None,
    }
}

/// One member of a JSON object in the raw text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    /// The key, decoded (the raw text is ISO-8859-1 and has no escapes).
    name: String,
    /// The key's bytes, quotes included.
    key: Range<usize>,
    /// The value's bytes.
    value: Range<usize>,
}

/// Deeper nesting than serde_json reads is not worth scanning.
const MAX_DEPTH: usize = 128;

/// A cursor over the raw text. Every method returns `None` on anything it
/// does not handle simply.
struct Scanner<'a> {
    raw: &'a [u8],
    at: usize,
    depth: usize,
}

impl<'a> Scanner<'a> {
    fn new(raw: &'a [u8], at: usize) -> Self {
        Self { raw, at, depth: 0 }
    }

    /// The whole raw value: one object and nothing but whitespace after it.
    fn document(&mut self) -> Option<Vec<Member>> {
        let members = self.object()?;
        self.skip_space()?;
        (self.at == self.raw.len()).then_some(members)
    }

    /// Skips blanks and continuations (`\`, a line end, the next line's
    /// indentation); fails on any other backslash.
    fn skip_space(&mut self) -> Option<()> {
        loop {
            match self.raw.get(self.at) {
                Some(b' ' | b'\t') => self.at += 1,
                Some(b'\\') => self.at = continuation_end(self.raw, self.at)?,
                _ => return Some(()),
            }
        }
    }

    /// The next byte after whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.skip_space()?;
        self.raw.get(self.at).copied()
    }

    /// Consumes `byte` after whitespace.
    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// Any JSON value; returns its bytes.
    fn value(&mut self) -> Option<Range<usize>> {
        self.peek()?;
        let start = self.at;
        match self.raw[start] {
            b'{' => self.object().map(drop)?,
            b'[' => self.array()?,
            b'"' => self.string().map(drop)?,
            _ => self.scalar()?,
        }
        Some(start..self.at)
    }

    /// An object; returns its members in order.
    fn object(&mut self) -> Option<Vec<Member>> {
        self.enter()?;
        self.eat(b'{')?;
        let mut members = Vec::new();
        if self.peek()? == b'}' {
            self.at += 1;
        } else {
            loop {
                members.push(self.member()?);
                match self.peek()? {
                    b',' => self.at += 1,
                    b'}' => {
                        self.at += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        Some(members)
    }

    /// `"key": value`.
    fn member(&mut self) -> Option<Member> {
        self.peek()?;
        let key = self.string()?;
        self.eat(b':')?;
        let value = self.value()?;
        let name = self.raw[key.start + 1..key.end - 1]
            .iter()
            .map(|&b| char::from(b))
            .collect();
        Some(Member { name, key, value })
    }

    fn array(&mut self) -> Option<()> {
        self.enter()?;
        self.eat(b'[')?;
        if self.peek()? == b']' {
            self.at += 1;
        } else {
            loop {
                self.value()?;
                match self.peek()? {
                    b',' => self.at += 1,
                    b']' => {
                        self.at += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        Some(())
    }

    /// A string without escapes or line breaks; returns its bytes, quotes
    /// included.
    fn string(&mut self) -> Option<Range<usize>> {
        let start = self.at;
        if self.raw.get(start) != Some(&b'"') {
            return None;
        }
        let length = self.raw[start + 1..].iter().position(|&b| b == b'"')?;
        let end = start + 1 + length + 1;
        let inner = &self.raw[start + 1..end - 1];
        if inner.iter().any(|&b| b == b'\\' || b < b' ') {
            return None;
        }
        self.at = end;
        Some(start..end)
    }

    /// A number, `true`, `false` or `null`: a run of letters, digits and
    /// `+-.` (whether it is valid JSON is left to the final check).
    fn scalar(&mut self) -> Option<()> {
        let length = self.raw[self.at..]
            .iter()
            .take_while(|&&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
            .count();
        (length > 0).then(|| self.at += length)
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }
}

/// Where the continuation whose backslash is at `at` ends: after the line
/// end and the next line's blanks, which the properties reader drops. `None`
/// when the backslash does not end its line (an escape).
fn continuation_end(raw: &[u8], at: usize) -> Option<usize> {
    let after = match (raw.get(at + 1), raw.get(at + 2)) {
        (Some(b'\r'), Some(b'\n')) => at + 3,
        (Some(b'\r' | b'\n'), _) => at + 2,
        _ => return None,
    };
    let blanks = raw[after..]
        .iter()
        .take_while(|&&b| matches!(b, b' ' | b'\t' | 0x0c))
        .count();
    Some(after + blanks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(model: &str, version: &str, field: ModelField, value: Value) -> FieldEdit {
        FieldEdit {
            model: model.into(),
            version: version.into(),
            field,
            value,
        }
    }

    fn set(raw: &str, field: ModelField, value: Value) -> Option<String> {
        set_field(raw.as_bytes(), &edit("tiny", "1.0", field, value)).map(|bytes| String::from_utf8(bytes).unwrap())
    }

    const LAYOUT: &str = "{\\\n  \"tiny\": {\\\n    \"1.0\": {\\\n      \"marName\": \"tiny.mar\",\\\r\n\t\"batchSize\": 1\\\n    }\\\n  }\\\n}";

    #[test]
    fn replaces_exactly_the_value_token() {
        assert_eq!(
            set(LAYOUT, ModelField::BatchSize, Value::from(16)).unwrap(),
            LAYOUT.replace("\"batchSize\": 1", "\"batchSize\": 16")
        );
        assert_eq!(
            set(LAYOUT, ModelField::MarName, Value::from("x.mar")).unwrap(),
            LAYOUT.replace("tiny.mar", "x.mar")
        );
    }

    #[test]
    fn adds_a_field_with_the_previous_members_layout() {
        assert_eq!(
            set(LAYOUT, ModelField::MaxBatchDelay, Value::from(5)).unwrap(),
            LAYOUT.replace("\"batchSize\": 1", "\"batchSize\": 1,\\\r\n\t\"maxBatchDelay\": 5")
        );
        assert_eq!(
            set(
                r#"{"tiny":{"1.0":{"a" :1 , "b" :2}}}"#,
                ModelField::MinWorkers,
                Value::from(3)
            )
            .unwrap(),
            r#"{"tiny":{"1.0":{"a" :1 , "b" :2 , "minWorkers" :3}}}"#
        );
    }

    #[test]
    fn skips_other_models_and_nested_values() {
        let raw = r#"{"big": {"1.0": {"batchSize": [1, {"x": null}], "t": true}}, "tiny": {"0": {}, "1.0": {"batchSize": 1, "y": -1.5e3}}}"#;
        assert_eq!(
            set(raw, ModelField::BatchSize, Value::from(2)).unwrap(),
            raw.replace(r#""batchSize": 1,"#, r#""batchSize": 2,"#)
        );
    }

    #[test]
    fn gives_up_on_what_it_does_not_handle_simply() {
        let cases = [
            // properties escapes
            r#"{"tiny": {"1.0": {"batchSize"\: 1, "b": 2}}}"#,
            r#"{"tiny": {"1.0": {"batchSize": \u0031, "b": 2}}}"#,
            r#"{"ti\ny": {"1.0": {"batchSize": 1, "b": 2}}}"#,
            // a continuation inside a string
            "{\"tiny\": {\"1.0\": {\"marName\": \"a\\\n  b\", \"batchSize\": 1}}}",
            // a backslash at the very end
            "{\"tiny\": {\"1.0\": {\"batchSize\": 1, \"b\": 2}}}\\",
            // duplicate keys on the way
            r#"{"tiny": {"1.0": {"batchSize": 1, "batchSize": 2}}}"#,
            r#"{"tiny": {"1.0": {"batchSize": 1}}, "tiny": {"1.0": {"batchSize": 1}}}"#,
            // the path is missing, or the text is not one object
            r#"{"small": {"1.0": {"batchSize": 1, "b": 2}}}"#,
            r#"{"tiny": {"2.0": {"batchSize": 1, "b": 2}}}"#,
            r#"{"tiny": {"1.0": {"batchSize": 1, "b": 2}}} x"#,
            r#"{"tiny": {"1.0": {"batchSize": 1 "b": 2}}}"#,
            "",
        ];
        for raw in cases {
            assert_eq!(set(raw, ModelField::BatchSize, Value::from(8)), None, "{raw}");
        }
        // fewer than two members: no layout to copy
        assert_eq!(
            set(r#"{"tiny": {"1.0": {"a": 1}}}"#, ModelField::BatchSize, Value::from(8)),
            None
        );
        // a value that would need properties escapes
        let simple = r#"{"tiny": {"1.0": {"marName": "a", "b": 2}}}"#;
        assert_eq!(set(simple, ModelField::MarName, Value::from("é.mar")), None);
        assert_eq!(set(simple, ModelField::MarName, Value::from("a\"b")), None);
        assert!(set(simple, ModelField::MarName, Value::from("b.mar")).is_some());
    }

    #[test]
    fn continuations_may_end_in_any_line_terminator() {
        for eol in ["\n", "\r\n", "\r"] {
            let raw = format!("{{\\{eol}\"tiny\":{{\"1.0\":{{\"a\":1,\\{eol} \x0c\"batchSize\":1}}}}}}");
            let expected = raw.replace("\"batchSize\":1", "\"batchSize\":9");
            assert_eq!(
                set(&raw, ModelField::BatchSize, Value::from(9)),
                Some(expected),
                "{eol:?}"
            );
        }
    }

    #[test]
    fn a_splice_that_decodes_to_something_else_is_re_rendered() {
        let text = "models={\"tiny\": {\"1.0\": {\"batchSize\": 1}}}\n";
        let edits = [edit("tiny", "1.0", ModelField::BatchSize, Value::from(8))];
        let mut want = Models::parse(r#"{"tiny": {"1.0": {"batchSize": 8}}}"#).unwrap();
        let mut props = Properties::parse(text.as_bytes().to_vec()).unwrap();
        write_models(&mut props, &want, &edits);
        assert_eq!(
            props.as_bytes(),
            text.replace("\"batchSize\": 1", "\"batchSize\": 8").as_bytes()
        );
        // The structural edit disagrees with the splice (as a scanner bug would).
        want.set_field("tiny", ModelField::MinWorkers, Value::from(2)).unwrap();
        let mut props = Properties::parse(text.as_bytes().to_vec()).unwrap();
        write_models(&mut props, &want, &edits);
        assert_eq!(props.get(MODELS_KEY).map(Models::parse), Some(Ok(want.clone())));
        assert!(props.as_bytes().starts_with(b"models={\\\n  \"tiny\""));
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = format!("{{\"x\": {}1{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(Scanner::new(deep.as_bytes(), 0).document(), None);
    }
}
