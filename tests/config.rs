//! The config editor against references: Java's own `java.util.Properties`
//! (run from `tests/java/DumpProperties.java`) and the `java-properties`
//! crate, on the fixture corpus and on generated documents; and the promise
//! that an edit leaves every other byte of the file as it was.

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
    let escape_in_comment = text
        .lines()
        .map(str::trim_start)
        .any(|line| (line.starts_with('#') || line.starts_with('!')) && line.contains('\\'));
    !open_continuation && !surrogate && !escape_in_comment
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
