//! The config editor against references: Java's own `java.util.Properties`
//! (run from `tests/java/DumpProperties.java`) and the `java-properties`
//! crate, on the fixture corpus and on generated documents; the promise
//! that an edit leaves every other byte of the file as it was; and that a
//! field set in `models={…}` keeps the JSON's layout, changing only its line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;
use proptest::strategy::ValueTree as _;
use servetune::config::escape::unescape;
use servetune::config::Properties;

type Map = BTreeMap<String, String>;

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/properties");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the fixture corpus exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "properties"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "fixture corpus is incomplete: {files:?}");
    files
}

fn ours(bytes: &[u8]) -> Map {
    let props = Properties::parse(bytes.to_vec()).expect("fixtures parse");
    props
        .effective()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Where the `java-properties` crate (2.x) departs from Java, found by these
/// tests: it drops a last line that ends in a continuation backslash at end
/// of file, rejects `\\u` escapes forming a surrogate pair, and decodes
/// escapes inside comments. Such documents are compared with Java only.
fn crate_reads_like_java(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes).to_lowercase();
    let open_continuation = bytes.iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1;
    let surrogate = ["\\ud8", "\\ud9", "\\uda", "\\udb", "\\udc", "\\udd", "\\ude", "\\udf"]
        .iter()
        .any(|escape| text.contains(escape));
    // Lines end at \n, \r\n or a bare \r (`str::lines` misses the last).
    let escape_in_comment = text
        .split(['\n', '\r'])
        .map(str::trim_start)
        .any(|line| (line.starts_with('#') || line.starts_with('!')) && line.contains('\\'));
    !open_continuation && !surrogate && !escape_in_comment
}

#[test]
fn a_comment_after_a_bare_carriage_return_is_a_comment_line() {
    // Found by the generated documents: the crate decodes `\u` in this comment.
    assert!(!crate_reads_like_java(b"A=\r#\\u\n"));
    assert_eq!(ours(b"A=\r#\\u\n"), Map::from([("A".to_string(), String::new())]));
}

fn crate_reference(bytes: &[u8]) -> Map {
    java_properties::read(bytes)
        .expect("java-properties reads it")
        .into_iter()
        .collect()
}

/// Runs Java's `Properties.load` on every file at once; one map per file.
fn java_reference(files: &[PathBuf]) -> Vec<Result<Map, String>> {
    let program = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/java/DumpProperties.java");
    let output = Command::new("java")
        .arg(&program)
        .args(files)
        .output()
        .expect("Java 17 is installed (TorchServe needs it too; see scripts/setup-torchserve.sh)");
    assert!(
        output.status.success(),
        "java failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("the dump is ASCII");
    let mut results: Vec<Result<Map, String>> = Vec::new();
    for line in stdout.lines() {
        if line.starts_with("== ") {
            results.push(Ok(Map::new()));
        } else if let Some(message) = line.strip_prefix("!! ") {
            *results.last_mut().expect("a header came first") = Err(message.to_string());
        } else {
            let (key, value) = line.split_once('\t').expect("key TAB value");
            let map = results
                .last_mut()
                .expect("a header came first")
                .as_mut()
                .expect("no entries after an error");
            map.insert(unescape(key.as_bytes()).unwrap(), unescape(value.as_bytes()).unwrap());
        }
    }
    assert_eq!(results.len(), files.len());
    results
}

#[test]
fn fixtures_parse_as_java_and_the_crate_read_them() {
    let files = fixtures();
    let java = java_reference(&files);
    for (file, java) in files.iter().zip(java) {
        let bytes = std::fs::read(file).unwrap();
        let ours = ours(&bytes);
        assert_eq!(
            ours,
            java.unwrap(),
            "{} differs from java.util.Properties",
            file.display()
        );
        if !crate_reads_like_java(&bytes) {
            continue;
        }
        // The crate decodes as windows-1252, which agrees with ISO-8859-1
        // outside 0x80..0x9f; the corpus avoids that range.
        assert_eq!(
            ours,
            crate_reference(&bytes),
            "{} differs from the java-properties crate",
            file.display()
        );
    }
}

const TRICKY_VALUE: &str = " = lead: # ! \\ tab\there é 中 😀 trailing ";

/// Every fixture, every key: set it to a tricky value and remove it. Java
/// must read exactly the intended map, and bytes outside the edited entry
/// must not move.
#[test]
fn edits_are_read_back_by_java_and_touch_nothing_else() {
    let scratch = tempfile::tempdir().unwrap();
    let mut edited_files = Vec::new();
    let mut expected = Vec::new();
    for file in fixtures() {
        let bytes = std::fs::read(&file).unwrap();
        let original = Properties::parse(bytes.clone()).unwrap();
        let base = ours(&bytes);
        for (index, key) in base.keys().enumerate() {
            let span = original.entry(key).unwrap().span();

            let mut set = original.clone();
            set.set(key, TRICKY_VALUE);
            let out = set.as_bytes();
            assert_eq!(
                &out[..span.start],
                &bytes[..span.start],
                "{}: bytes before {key:?} moved",
                file.display()
            );
            let tail = &bytes[span.end..];
            assert_eq!(
                &out[out.len() - tail.len()..],
                tail,
                "{}: bytes after {key:?} moved",
                file.display()
            );
            let mut want = base.clone();
            want.insert(key.clone(), TRICKY_VALUE.to_string());
            let path = scratch.path().join(format!(
                "{}-set-{index}.properties",
                file.file_stem().unwrap().to_string_lossy()
            ));
            std::fs::write(&path, out).unwrap();
            edited_files.push(path);
            expected.push(want);

            let mut removed = original.clone();
            removed.remove(key);
            let mut want = base.clone();
            want.remove(key);
            let path = scratch.path().join(format!(
                "{}-rm-{index}.properties",
                file.file_stem().unwrap().to_string_lossy()
            ));
            std::fs::write(&path, removed.as_bytes()).unwrap();
            edited_files.push(path);
            expected.push(want);
        }
        let mut appended = original.clone();
        appended.set("servetune.new key", TRICKY_VALUE);
        assert!(
            appended.as_bytes().starts_with(&bytes),
            "{}: append changed existing bytes",
            file.display()
        );
        let mut want = base.clone();
        want.insert("servetune.new key".into(), TRICKY_VALUE.into());
        let path = scratch.path().join(format!(
            "{}-append.properties",
            file.file_stem().unwrap().to_string_lossy()
        ));
        std::fs::write(&path, appended.as_bytes()).unwrap();
        edited_files.push(path);
        expected.push(want);
    }
    let java = java_reference(&edited_files);
    for ((path, want), java) in edited_files.iter().zip(&expected).zip(java) {
        let java = java.unwrap_or_else(|e| panic!("{}: Java could not read it: {e}", path.display()));
        assert_eq!(&java, want, "{}: Java reads something else", path.display());
        assert_eq!(
            &ours(&std::fs::read(path).unwrap()),
            want,
            "{}: we read something else",
            path.display()
        );
    }
}

#[test]
fn malformed_unicode_escape_is_rejected_like_java() {
    let scratch = tempfile::tempdir().unwrap();
    let path = scratch.path().join("bad.properties");
    std::fs::write(&path, "ok=1\nbad=\\u12x4\n").unwrap();
    let java = java_reference(std::slice::from_ref(&path));
    assert!(java[0].as_ref().unwrap_err().contains("Malformed"), "{:?}", java[0]);
    let ours = Properties::parse(std::fs::read(&path).unwrap()).unwrap_err();
    assert_eq!(ours.line, 2);
}

// ---- generated documents --------------------------------------------------

/// Generated documents, many at once (one JVM), read by Java and by us.
#[test]
fn generated_documents_parse_like_java() {
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let scratch = tempfile::tempdir().unwrap();
    let strategy = document();
    let mut files = Vec::new();
    let mut texts = Vec::new();
    for index in 0..400 {
        let text = strategy.new_tree(&mut runner).unwrap().current();
        let path = scratch.path().join(format!("generated-{index}.properties"));
        std::fs::write(&path, &text).unwrap();
        files.push(path);
        texts.push(text);
    }
    for ((text, path), java) in texts.iter().zip(&files).zip(java_reference(&files)) {
        let java = java.unwrap_or_else(|e| panic!("{}: Java rejects {text:?}: {e}", path.display()));
        assert_eq!(ours(text.as_bytes()), java, "document: {text:?}");
    }
}

fn line_ending() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("\n"), Just("\r\n"), Just("\r")]
}

/// Raw (already escaped) text for a key: no separators, maybe escapes.
fn raw_key() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            "[a-zA-Z0-9_.-]{1,3}",
            Just("\\ ".to_string()),
            Just("\\=".to_string()),
            Just("\\:".to_string()),
            Just("\\u00e9".to_string()),
        ],
        1..4,
    )
    .prop_map(|parts| parts.concat())
}

/// Raw text for a value: printable ASCII without backslashes, escapes, and
/// continuations (backslash, line end, indentation).
fn raw_value() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => "[ -\\[\\]-~]{0,6}",
            1 => Just("\\t".to_string()),
            1 => Just("\\\\".to_string()),
            1 => Just("\\u4e2d".to_string()),
            1 => (line_ending(), "[ \t]{0,3}").prop_map(|(eol, indent)| format!("\\{eol}{indent}")),
        ],
        0..5,
    )
    .prop_map(|parts| parts.concat())
}

fn separator() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("="),
        Just(":"),
        Just(" "),
        Just(" = "),
        Just("\t:"),
        Just("  "),
        Just("=  ")
    ]
}

fn document_line() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => ("[ \t]{0,2}", raw_key(), separator(), raw_value(), line_ending())
            .prop_map(|(indent, key, sep, value, eol)| format!("{indent}{key}{sep}{value}{eol}")),
        1 => (prop_oneof![Just("#"), Just("!"), Just("  # ")], "[ -~]{0,10}", line_ending())
            .prop_map(|(mark, text, eol)| format!("{mark}{text}{eol}")),
        1 => ("[ \t]{0,3}", line_ending()).prop_map(|(ws, eol)| format!("{ws}{eol}")),
    ]
}

fn document() -> impl Strategy<Value = String> {
    (prop::collection::vec(document_line(), 0..12), any::<bool>()).prop_map(|(lines, strip_last_eol)| {
        let mut text = lines.concat();
        if strip_last_eol {
            while text.ends_with('\n') || text.ends_with('\r') {
                text.pop();
            }
        }
        text
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn generated_documents_parse_like_the_java_properties_crate(text in document()) {
        prop_assume!(crate_reads_like_java(text.as_bytes()));
        prop_assert_eq!(ours(text.as_bytes()), crate_reference(text.as_bytes()), "document: {:?}", text);
    }

    #[test]
    fn parsing_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = Properties::parse(bytes);
    }

    #[test]
    fn set_changes_only_its_entry(text in document(), pick in any::<prop::sample::Index>(), value in any::<String>()) {
        let original = Properties::parse(text.clone().into_bytes()).unwrap();
        let base = ours(text.as_bytes());
        let keys: Vec<&String> = base.keys().collect();
        let key = if keys.is_empty() { "fresh.key".to_string() } else { keys[pick.index(keys.len())].clone() };
        let mut edited = original.clone();
        edited.set(&key, &value);
        let out = edited.as_bytes();
        match original.entry(&key) {
            Some(entry) => {
                let span = entry.span();
                prop_assert_eq!(&out[..span.start], &text.as_bytes()[..span.start]);
                let tail = &text.as_bytes()[span.end..];
                prop_assert_eq!(&out[out.len() - tail.len()..], tail);
            }
            None => prop_assert!(out.starts_with(text.trim_end_matches(['\r', '\n']).as_bytes())),
        }
        let mut want = base.clone();
        want.insert(key.clone(), value.clone());
        prop_assert_eq!(ours(out), want);
    }

    #[test]
    fn set_lines_reads_back_as_the_concatenation(
        text in document(),
        lines in prop::collection::vec("[ ]{0,3}[ -~]{0,8}", 1..5),
    ) {
        let mut props = Properties::parse(text.into_bytes()).unwrap();
        props.set_lines("models", &lines);
        let expected: String = lines
            .iter()
            .enumerate()
            .map(|(i, line)| if i == 0 { line.as_str() } else { line.trim_start_matches(' ') })
            .collect();
        let reparsed = Properties::parse(props.as_bytes().to_vec()).unwrap();
        prop_assert_eq!(reparsed.get("models"), Some(expected.as_str()));
    }
}

// ---- models={…}: edits in place ------------------------------------------

/// A JSON value before layout.
#[derive(Debug, Clone)]
enum Json {
    Scalar(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// Random whitespace for the renderer, read from a stream of choices.
struct Layout {
    choices: Vec<u8>,
    next: usize,
}

impl Layout {
    fn choose(&mut self) -> u8 {
        let choice = self.choices[self.next % self.choices.len()];
        self.next += 1;
        choice
    }

    /// Whitespace between tokens: nothing, blanks, or continuations
    /// (backslash, any line end, indentation).
    fn gap(&mut self) -> String {
        match self.choose() % 16 {
            0..=5 => String::new(),
            6..=8 => " ".into(),
            9 => "  ".into(),
            choice => {
                let mut gap = String::new();
                let lines = if choice == 15 { 2 } else { 1 };
                for _ in 0..lines {
                    let eol = ["\n", "\n", "\r\n", "\r"][usize::from(self.choose() % 4)];
                    let indent = ["", "  ", "    ", "      ", "\t", " \t"][usize::from(self.choose() % 6)];
                    gap.push_str(&format!("\\{eol}{indent}"));
                }
                gap
            }
        }
    }

    /// Spacing around a member's `:`, kept on the line so that a field and
    /// its value share one line.
    fn tight(&mut self) -> &'static str {
        ["", " ", "  "][usize::from(self.choose() % 3)]
    }

    fn render(&mut self, json: &Json, out: &mut String) {
        match json {
            Json::Scalar(text) => out.push_str(text),
            Json::Array(items) => {
                out.push('[');
                for (index, item) in items.iter().enumerate() {
                    out.push_str(&self.gap());
                    self.render(item, out);
                    out.push_str(&self.gap());
                    if index + 1 < items.len() {
                        out.push(',');
                    }
                }
                out.push(']');
            }
            Json::Object(members) => {
                out.push('{');
                for (index, (key, value)) in members.iter().enumerate() {
                    out.push_str(&self.gap());
                    out.push_str(&format!("\"{key}\"{}:{}", self.tight(), self.tight()));
                    self.render(value, out);
                    out.push_str(&self.gap());
                    if index + 1 < members.len() {
                        out.push(',');
                    }
                }
                out.push('}');
            }
        }
    }
}

const NUMERIC_FIELDS: [&str; 6] = [
    "minWorkers",
    "maxWorkers",
    "batchSize",
    "maxBatchDelay",
    "responseTimeout",
    "startupTimeout",
];

/// Values of fields servetune does not know, to be skipped over.
fn extra_value() -> impl Strategy<Value = Json> {
    let scalar = |text: &str| Json::Scalar(text.to_string());
    prop::sample::select(vec![
        Json::Array(vec![scalar("1"), scalar("2")]),
        Json::Object(vec![("k".into(), Json::Array(vec![scalar("true"), scalar("null")]))]),
        Json::Array(vec![]),
        Json::Object(vec![]),
        scalar("\"a b: c\""),
        scalar("-1.5e3"),
    ])
}

/// One version's fields: a marName and at least one more member, so that a
/// field added to it has a layout to copy.
fn version_fields() -> impl Strategy<Value = Vec<(String, Json)>> {
    (
        "[a-z]{1,6}",
        prop::sample::subsequence(NUMERIC_FIELDS.to_vec(), 1..=4),
        prop::collection::vec(1u32..1000, 4),
        prop::option::of(extra_value()),
    )
        .prop_map(|(mar, fields, values, extra)| {
            let mut members = vec![("marName".to_string(), Json::Scalar(format!("\"{mar}.mar\"")))];
            for (field, value) in fields.iter().zip(values) {
                members.push((field.to_string(), Json::Scalar(value.to_string())));
            }
            members.extend(extra.map(|value| ("extra".to_string(), value)));
            members
        })
        .prop_shuffle()
}

/// One model: one to three versions, one marked default when there are several.
fn model_versions() -> impl Strategy<Value = Json> {
    (
        prop::collection::vec(version_fields(), 1..=3),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(versions, default, mark_single)| {
            let (count, default) = (versions.len(), default.index(versions.len()));
            let members = versions
                .into_iter()
                .enumerate()
                .map(|(index, mut fields)| {
                    if index == default && (mark_single || count > 1) {
                        fields.insert(0, ("defaultVersion".to_string(), Json::Scalar("true".into())));
                    }
                    (format!("{}.0", index + 1), Json::Object(fields))
                })
                .collect();
            Json::Object(members)
        })
}

fn models_json() -> impl Strategy<Value = Json> {
    prop::collection::btree_map("[a-z]{1,4}(\\.[a-z]{1,2})?", model_versions(), 1..=3)
        .prop_map(|models| Json::Object(models.into_iter().collect()))
}

/// `models=` laid out at random between two other entries.
fn laid_out_models() -> impl Strategy<Value = String> {
    (models_json(), prop::collection::vec(any::<u8>(), 256), line_ending()).prop_map(|(json, choices, eol)| {
        let mut layout = Layout { choices, next: 0 };
        let mut text = format!("a=1{eol}models={}", layout.gap());
        layout.render(&json, &mut text);
        text.push_str(&layout.gap());
        if text.ends_with('\r') && eol.starts_with('\n') {
            // `\r` and `\n` would read as one line end, continuing `models=`.
            text.push(' ');
        }
        text.push_str(&format!("{eol}# end{eol}"));
        text
    })
}

/// One `--set` of a model field: the model (by index), the field and its value.
fn model_field_set() -> impl Strategy<Value = (prop::sample::Index, &'static str, String)> {
    let numeric = (prop::sample::select(NUMERIC_FIELDS.to_vec()), 1u32..1000).prop_map(|(f, v)| (f, v.to_string()));
    let mar = "[a-z]{1,6}".prop_map(|name| ("marName", format!("{name}.mar")));
    let default = Just(("defaultVersion", "true".to_string()));
    (
        any::<prop::sample::Index>(),
        prop_oneof![6 => numeric, 2 => mar, 1 => default],
    )
        .prop_map(|(model, (field, value))| (model, field, value))
}

/// Natural lines, terminators (`\n`, `\r\n`, `\r`) included.
fn natural_lines(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut lines = Vec::new();
    let (mut start, mut at) = (0, 0);
    while at < bytes.len() {
        at += match (bytes[at], bytes.get(at + 1)) {
            (b'\r', Some(b'\n')) => 2,
            _ => 1,
        };
        if matches!(bytes[at - 1], b'\n' | b'\r') {
            lines.push(&text[start..at]);
            start = at;
        }
    }
    if start < text.len() {
        lines.push(&text[start..]);
    }
    lines
}

/// The lines of `before` and `after` that differ, once the longest common
/// head and tail are set aside.
fn changed_lines<'a>(before: &'a str, after: &'a str) -> (Vec<&'a str>, Vec<&'a str>) {
    let (a, b) = (natural_lines(before), natural_lines(after));
    let head = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let tail = a[head..]
        .iter()
        .rev()
        .zip(b[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    (a[head..a.len() - tail].to_vec(), b[head..b.len() - tail].to_vec())
}

/// What `after` adds to `before`, when it only adds bytes at one place.
fn inserted<'a>(before: &str, after: &'a str) -> Option<&'a str> {
    let extra = after.len().checked_sub(before.len())?;
    let head = before.bytes().zip(after.bytes()).take_while(|(a, b)| a == b).count();
    (after[head + extra..] == before[head..]).then(|| &after[head..head + extra])
}

/// Whether `added` is `"field": value` with nothing but a comma and
/// layout (blanks, continuations) around it.
fn is_new_member(added: &str, quoted: &str, literal: &str) -> bool {
    let layout = |text: &str| text.bytes().all(|b| b" \t\r\n,\\".contains(&b));
    let Some((lead, rest)) = added.split_once(quoted) else {
        return false;
    };
    let tail = rest
        .trim_start_matches(' ')
        .strip_prefix(':')
        .and_then(|rest| rest.trim_start_matches(' ').strip_prefix(literal));
    added.contains(',') && layout(lead) && tail.is_some_and(layout)
}

fn decoded_models(text: &str) -> servetune::config::Models {
    let props = Properties::parse(text.as_bytes().to_vec()).expect("the document parses");
    servetune::config::Models::parse(props.get("models").expect("models= is there")).expect("models= decodes")
}

fn apply(text: &str, sets: &[String]) -> String {
    let mut props = Properties::parse(text.as_bytes().to_vec()).expect("the document parses");
    let assignments: Vec<servetune::config::Assignment> =
        sets.iter().map(|set| set.parse().expect("a valid --set")).collect();
    servetune::config::apply_assignments(&mut props, &assignments).expect("the assignments apply");
    String::from_utf8(props.into_bytes()).expect("the document stays ASCII")
}

/// TorchServe's documented example, edited in place: Java reads the JSON we
/// meant, and the file changes by one line per field.
#[test]
fn model_field_edits_in_place_are_read_back_by_java() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/properties/torchserve-docs.properties");
    let text = std::fs::read_to_string(&fixture).unwrap();
    for eol in ["\n", "\r\n"] {
        let text = text.replace('\n', eol);
        let sets: Vec<String> = [
            "models.noop.batchSize=2",
            "models.vgg16.marName=vgg.mar",
            "models.vgg16.startupTimeout=300",
            "models.noop.maxWorkers=3",
        ]
        .map(String::from)
        .to_vec();
        let edited = apply(&text, &sets);
        let mut expected = text
            .replace("\"batchSize\": 4,", "\"batchSize\": 2,")
            .replace("\"vgg16.mar\"", "\"vgg.mar\"")
            .replace("\"maxWorkers\": 1,", "\"maxWorkers\": 3,");
        let last = "\"responseTimeout\": 120";
        let at = expected.rfind(last).unwrap() + last.len();
        expected.insert_str(at, &format!(",\\{eol}        \"startupTimeout\": 300"));
        assert_eq!(edited, expected);

        let mut want = decoded_models(&text);
        for set in &sets {
            let (key, value) = set.split_once('=').unwrap();
            let (model, field) = key["models.".len()..].split_once('.').unwrap();
            let field = servetune::config::ModelField::from_name(field).unwrap();
            want.set_field(model, field, field.parse_value(value).unwrap()).unwrap();
        }
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("edited.properties");
        std::fs::write(&path, &edited).unwrap();
        let java = java_reference(std::slice::from_ref(&path)).remove(0).unwrap();
        let java_models = servetune::config::Models::parse(&java["models"]).unwrap();
        assert_eq!(java_models.to_lines(), want.to_lines(), "{eol:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Each model field set changes only the line that holds it (adding a
    /// field also puts a comma after the member before it), the JSON decodes
    /// to the structural edit, and setting them all at once writes the same.
    #[test]
    fn model_field_edits_keep_the_layout(
        text in laid_out_models(),
        sets in prop::collection::vec(model_field_set(), 1..5),
    ) {
        let mut want = decoded_models(&text);
        let names: Vec<String> = want.model_names().map(str::to_string).collect();
        let sets: Vec<(String, &str, String)> = sets
            .into_iter()
            .map(|(model, field, value)| (names[model.index(names.len())].clone(), field, value))
            .collect();
        let mut current = text.clone();
        for (model, field_name, value) in &sets {
            let field = servetune::config::ModelField::from_name(field_name).expect("a known field");
            let existed = want.field(model, field).expect("the model has a default version").is_some();
            want.set_field(model, field, field.parse_value(value).expect("a valid value")).expect("settable");
            let edited = apply(&current, &[format!("models.{model}.{field_name}={value}")]);
            prop_assert_eq!(decoded_models(&edited).to_lines(), want.to_lines(), "{}", edited);

            let quoted = format!("\"{field_name}\"");
            let (before, after) = changed_lines(&current, &edited);
            if existed {
                prop_assert!(before.len() <= 1 && before.len() == after.len(), "{:?} -> {:?}", before, after);
                for line in before.iter().chain(&after) {
                    prop_assert!(line.contains(&quoted), "{:?} -> {:?}", before, after);
                }
            } else {
                // Nothing but the new member was added, with a comma and layout.
                prop_assert!(before.len() <= 1, "{:?} -> {:?}", before, after);
                let literal = serde_json::to_string(&field.parse_value(value).expect("valid")).expect("JSON");
                let added = inserted(&current, &edited);
                prop_assert!(
                    added.is_some_and(|added| is_new_member(added, &quoted, &literal)),
                    "{:?} -> {:?}", before, after
                );
            }
            current = edited;
        }
        let all: Vec<String> = sets
            .iter()
            .map(|(model, field, value)| format!("models.{model}.{field}={value}"))
            .collect();
        prop_assert_eq!(apply(&text, &all), current);
    }
}
