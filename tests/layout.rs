//! The shape of `src/`, checked from its text in milliseconds: no source
//! file over 800 lines, no two files that import each other, and no import
//! that climbs from a lower floor of the pipeline to a higher one.
//!
//! An import is any path in code outside `#[cfg(test)]` items: `use crate::…`,
//! `super::…`, `self::…`, a path through a child module (`bench::run`) or
//! through a name a `use` bound. A path names the deepest file it goes
//! through, so a child file that uses an item of its parent (`super::Thing`)
//! imports the parent file, and a parent that calls into a child
//! (`child::run`) imports the child; `mod child;` alone imports nothing.
//!
//! The floors are the top-level modules, lowest first (the same table opens
//! `src/lib.rs`). A file may import its own floor's modules and lower ones;
//! two top-level modules may not import each other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Violations known and tolerated for now: the test passes while every
/// violation it finds is listed here. Remove each one as it is fixed.
const KNOWN_ELSEWHERE: &[&str] = &[];

/// Top-level modules, lowest floor first.
const FLOORS: &[&[&str]] = &[
    &["stats", "machine", "signals", "cert_check"],
    &["config", "space"],
    &["objective"],
    &["search", "trial", "measure"],
    &["load"],
    &["server", "store"],
    &["apply", "bench", "landscape", "predict"],
    &["report"],
    &["study"],
    &["replay", "compare"],
    &["daemon"],
    &["cli"],
];

const MAX_LINES: usize = 800;

#[test]
fn src_keeps_its_layout() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = read_sources(&src);
    let graph = import_graph(&files);
    let mut found = BTreeMap::new();
    found.extend(oversized_files(&files));
    found.extend(mutual_imports(&graph));
    found.extend(longer_cycles(&graph.edges, "files"));
    found.extend(floor_violations(&graph));

    let unexpected: Vec<_> = found
        .iter()
        .filter(|(key, _)| !KNOWN_ELSEWHERE.contains(&key.as_str()))
        .collect();
    for (key, detail) in &found {
        let mark = if KNOWN_ELSEWHERE.contains(&key.as_str()) {
            "known"
        } else {
            "NEW"
        };
        println!("{mark}: {key}{detail}");
    }
    for stale in KNOWN_ELSEWHERE.iter().filter(|k| !found.contains_key(**k)) {
        println!("no longer found (remove it from KNOWN_ELSEWHERE): {stale}");
    }
    assert!(
        unexpected.is_empty(),
        "{} layout violation(s) of src/:\n{}",
        unexpected.len(),
        unexpected
            .iter()
            .map(|(key, detail)| format!("  {key}{detail}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A source file: its path under the crate root, module path, text and code.
struct Source {
    shown: String,
    module: Vec<String>,
    lines: usize,
    /// The text without comments, literals and `#[cfg(test)]` items.
    code: String,
}

fn read_sources(src: &Path) -> Vec<Source> {
    let mut paths = Vec::new();
    collect_rs(src, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("a source file reads");
            let relative = path.strip_prefix(src).expect("under src/");
            Source {
                shown: format!("src/{}", relative.display()),
                module: module_path(relative),
                lines: text.lines().count(),
                code: without_test_items(&without_comments_and_literals(&text)),
            }
        })
        .collect()
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ reads") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `lib.rs` → `[]`, `a.rs` and `a/mod.rs` → `[a]`, `a/b.rs` → `[a, b]`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib") {
        parts.push(stem.to_string());
    }
    parts
}

// ---- the checks ----------------------------------------------------------

type Found = BTreeMap<String, String>;

fn oversized_files(files: &[Source]) -> Found {
    files
        .iter()
        .filter(|f| f.lines > MAX_LINES)
        .map(|f| {
            (
                format!("over {MAX_LINES} lines: {}", f.shown),
                format!(" ({} lines)", f.lines),
            )
        })
        .collect()
}

/// File → the files it imports, and each file's module path.
struct Graph {
    edges: BTreeMap<String, BTreeSet<String>>,
    module_of: BTreeMap<String, Vec<String>>,
}

fn mutual_imports(graph: &Graph) -> Found {
    let mut found = Found::new();
    for (a, targets) in &graph.edges {
        for b in targets.iter().filter(|b| a < *b) {
            if graph.edges.get(b).is_some_and(|back| back.contains(a)) {
                found.insert(format!("import each other: {a} <-> {b}"), String::new());
            }
        }
    }
    found
}

/// Groups of three or more nodes that reach one another (two that do are
/// reported as importing each other).
fn longer_cycles(edges: &BTreeMap<String, BTreeSet<String>>, what: &str) -> Found {
    let reach: BTreeMap<&str, BTreeSet<&str>> = edges.keys().map(|n| (n.as_str(), reachable(edges, n))).collect();
    let mut found = Found::new();
    for (node, from_node) in &reach {
        let group: BTreeSet<&str> = from_node
            .iter()
            .copied()
            .filter(|other| reach.get(other).is_some_and(|back| back.contains(node)))
            .collect();
        if group.len() > 2 {
            let names: Vec<&str> = group.into_iter().collect();
            found.insert(
                format!("{what} import one another in a cycle: {}", names.join(", ")),
                String::new(),
            );
        }
    }
    found
}

/// Every node reachable from `start` through one or more edges.
fn reachable<'e>(edges: &'e BTreeMap<String, BTreeSet<String>>, start: &str) -> BTreeSet<&'e str> {
    let mut seen = BTreeSet::new();
    let mut next: Vec<&str> = edges.get(start).into_iter().flatten().map(String::as_str).collect();
    while let Some(node) = next.pop() {
        if seen.insert(node) {
            next.extend(edges.get(node).into_iter().flatten().map(String::as_str));
        }
    }
    seen
}

fn floor_of(module: &str) -> Option<usize> {
    FLOORS.iter().position(|floor| floor.contains(&module))
}

fn floor_violations(graph: &Graph) -> Found {
    let mut found = Found::new();
    let mut module_edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (from, targets) in &graph.edges {
        let Some(low) = top_module(graph, from) else {
            continue;
        };
        for to in targets {
            let Some(high) = top_module(graph, to).filter(|high| *high != low) else {
                continue;
            };
            module_edges.entry(low).or_default().insert(high);
            match (floor_of(low), floor_of(high)) {
                (Some(a), Some(b)) if b > a => {
                    found.insert(
                        format!("climbs a floor: {from} -> {to}"),
                        format!(" ({low} is on floor {a}, {high} on floor {b})"),
                    );
                }
                (None, _) | (_, None) => {
                    let missing = if floor_of(low).is_none() { low } else { high };
                    found.insert(format!("not in FLOORS: {missing}"), String::new());
                }
                _ => {}
            }
        }
    }
    for (a, targets) in &module_edges {
        for b in targets.iter().filter(|b| a < *b) {
            if module_edges.get(b).is_some_and(|back| back.contains(a)) {
                found.insert(format!("modules import each other: {a} <-> {b}"), String::new());
            }
        }
    }
    let owned: BTreeMap<String, BTreeSet<String>> = module_edges
        .iter()
        .map(|(m, targets)| (m.to_string(), targets.iter().map(|t| t.to_string()).collect()))
        .collect();
    found.extend(longer_cycles(&owned, "modules"));
    found
}

fn top_module<'g>(graph: &'g Graph, file: &str) -> Option<&'g str> {
    graph.module_of.get(file)?.first().map(String::as_str)
}

// ---- the import graph ----------------------------------------------------

fn import_graph(files: &[Source]) -> Graph {
    let lib: Vec<_> = files.iter().filter(|f| f.shown != "src/main.rs").collect();
    let by_module: BTreeMap<&[String], &str> = lib.iter().map(|f| (f.module.as_slice(), f.shown.as_str())).collect();
    let mut edges = BTreeMap::new();
    for file in &lib {
        let targets: BTreeSet<String> = imported_modules(file)
            .iter()
            .filter_map(|path| deepest_file(&by_module, path))
            .filter(|target| *target != file.shown && *target != "src/lib.rs")
            .map(str::to_string)
            .collect();
        edges.insert(file.shown.clone(), targets);
    }
    let module_of = lib.iter().map(|f| (f.shown.clone(), f.module.clone())).collect();
    Graph { edges, module_of }
}

/// The file of the longest prefix of `path` that is a file's module.
fn deepest_file<'m>(by_module: &BTreeMap<&[String], &'m str>, path: &[String]) -> Option<&'m str> {
    (0..=path.len()).rev().find_map(|n| by_module.get(&path[..n]).copied())
}

/// Every absolute path (from the crate root) the file's code names.
fn imported_modules(file: &Source) -> Vec<Vec<String>> {
    let children = child_modules(&file.code);
    let mut bindings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut absolute_paths = Vec::new();
    let (uses, rest) = split_use_items(&file.code);
    for use_item in &uses {
        for (path, binding) in use_leaves(use_item) {
            let Some(absolute) = resolve(&file.module, &path, &children, &bindings) else {
                continue;
            };
            if let Some(name) = binding {
                bindings.insert(name, absolute.clone());
            }
            absolute_paths.push(absolute);
        }
    }
    for path in code_paths(&rest) {
        if let Some(absolute) = resolve(&file.module, &path, &children, &bindings) {
            absolute_paths.push(absolute);
        }
    }
    absolute_paths
}

/// A path as written, made absolute; `None` for paths outside the crate.
fn resolve(
    module: &[String],
    path: &[String],
    children: &BTreeSet<String>,
    bindings: &BTreeMap<String, Vec<String>>,
) -> Option<Vec<String>> {
    let first = path.first()?.as_str();
    let mut base: Vec<String> = match first {
        "crate" => Vec::new(),
        "self" | "super" => module.to_vec(),
        _ if children.contains(first) => {
            let mut base = module.to_vec();
            base.push(first.to_string());
            base
        }
        _ => bindings.get(first)?.clone(),
    };
    let mut rest = &path[1..];
    if first == "super" {
        base.pop();
        while rest.first().is_some_and(|s| s == "super") {
            base.pop();
            rest = &rest[1..];
        }
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// The names of `mod name;` declarations.
fn child_modules(code: &str) -> BTreeSet<String> {
    let tokens = tokens(code);
    tokens
        .windows(3)
        .filter(|w| w[0] == "mod" && is_ident(&w[1]) && w[2] == ";")
        .map(|w| w[1].clone())
        .collect()
}

// ---- `use` items and paths in code ---------------------------------------

/// The `use` items (each as its tree, without `use` and `;`), and the code
/// with them blanked out.
fn split_use_items(code: &str) -> (Vec<String>, String) {
    let bytes = code.as_bytes();
    let mut uses = Vec::new();
    let mut rest = String::with_capacity(code.len());
    let mut i = 0;
    while i < bytes.len() {
        let starts_use = code[i..].starts_with("use")
            && (i == 0 || !is_ident_byte(bytes[i - 1]))
            && bytes.get(i + 3).is_some_and(|b| b.is_ascii_whitespace());
        if !starts_use {
            rest.push(bytes[i] as char);
            i += 1;
            continue;
        }
        let end = code[i..].find(';').map_or(code.len(), |n| i + n);
        uses.push(code[i + 3..end].to_string());
        rest.push(' ');
        i = end + 1;
    }
    (uses, rest)
}

/// A use tree's leaves: each full path and the name it binds (if any).
fn use_leaves(tree: &str) -> Vec<(Vec<String>, Option<String>)> {
    let tokens = tokens(tree);
    let mut leaves = Vec::new();
    let mut at = 0;
    use_tree(&tokens, &mut at, &[], &mut leaves);
    leaves
}

fn use_tree(tokens: &[String], at: &mut usize, prefix: &[String], leaves: &mut Vec<(Vec<String>, Option<String>)>) {
    let mut path = prefix.to_vec();
    while *at < tokens.len() {
        let token = tokens[*at].as_str();
        *at += 1;
        match token {
            "::" => {}
            "{" => {
                loop {
                    use_tree(tokens, at, &path, leaves);
                    let next = tokens.get(*at).map(String::as_str);
                    *at += 1;
                    if next != Some(",") || tokens.get(*at).is_some_and(|t| t == "}") {
                        if next == Some(",") {
                            *at += 1;
                        }
                        break;
                    }
                }
                return;
            }
            "*" => {
                leaves.push((path, None));
                return;
            }
            "as" => {
                let alias = tokens.get(*at).filter(|a| *a != "_").cloned();
                *at += 1;
                leaves.push((path, alias));
                return;
            }
            "," | "}" => {
                *at -= 1;
                break;
            }
            "self" if !path.is_empty() => {}
            ident => path.push(ident.to_string()),
        }
    }
    let binding = path.last().filter(|name| is_ident(name)).cloned();
    if !path.is_empty() {
        leaves.push((path, binding));
    }
}

/// Every `a::b::c` in code (at least two segments).
fn code_paths(code: &str) -> Vec<Vec<String>> {
    let tokens = tokens(code);
    let mut paths = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let starts = is_ident(&tokens[i])
            && tokens.get(i + 1).is_some_and(|t| t == "::")
            && (i == 0 || !matches!(tokens[i - 1].as_str(), "::" | "."));
        if !starts {
            i += 1;
            continue;
        }
        let mut path = vec![tokens[i].clone()];
        i += 1;
        while tokens.get(i).is_some_and(|t| t == "::") && tokens.get(i + 1).is_some_and(|t| is_ident(t)) {
            path.push(tokens[i + 1].clone());
            i += 2;
        }
        if path.len() > 1 {
            paths.push(path);
        }
    }
    paths
}

/// Identifiers, `::` and single punctuation characters.
fn tokens(code: &str) -> Vec<String> {
    let bytes = code.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if is_ident_byte(b) {
            let start = i;
            while i < bytes.len() && is_ident_byte(bytes[i]) {
                i += 1;
            }
            tokens.push(code[start..i].to_string());
        } else if code[i..].starts_with("::") {
            tokens.push("::".to_string());
            i += 2;
        } else {
            if !b.is_ascii_whitespace() {
                tokens.push((b as char).to_string());
            }
            i += 1;
        }
    }
    tokens
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_ident(token: &str) -> bool {
    token
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
}

// ---- removing comments, literals and test code ---------------------------

/// The text with comments removed and every string or char literal emptied,
/// so that neither can look like a path. Non-ASCII text only occurs inside
/// them, so what remains is ASCII.
fn without_comments_and_literals(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let rest = &chars[i..];
        let skipped = match rest {
            ['/', '/', ..] => skip_line(rest),
            ['/', '*', ..] => skip_block_comment(rest),
            ['"', ..] => skip_string(rest),
            ['r', '#' | '"', ..] => raw_string_len(rest).unwrap_or(0),
            ['\'', ..] => skip_char_or_lifetime(rest),
            _ => 0,
        };
        if skipped > 0 {
            // A space keeps the tokens on either side apart.
            out.push(' ');
            i += skipped;
        } else {
            out.push(if rest[0].is_ascii() { rest[0] } else { ' ' });
            i += 1;
        }
    }
    out
}

fn skip_line(rest: &[char]) -> usize {
    rest.iter().position(|c| *c == '\n').unwrap_or(rest.len())
}

fn skip_block_comment(rest: &[char]) -> usize {
    let mut depth = 0;
    let mut i = 0;
    while i < rest.len() {
        match &rest[i..] {
            ['/', '*', ..] => {
                depth += 1;
                i += 2;
            }
            ['*', '/', ..] => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    rest.len()
}

fn skip_string(rest: &[char]) -> usize {
    let mut i = 1;
    while i < rest.len() {
        match rest[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    rest.len()
}

/// The length of a raw string `r#"…"#` at the start of `rest`, if one is.
fn raw_string_len(rest: &[char]) -> Option<usize> {
    let hashes = rest[1..].iter().take_while(|c| **c == '#').count();
    if rest.get(1 + hashes) != Some(&'"') {
        return None;
    }
    let body = 2 + hashes;
    let close: Vec<char> = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
    let end = rest[body..].windows(close.len()).position(|w| w == close.as_slice())?;
    Some(body + end + close.len())
}

fn skip_char_or_lifetime(rest: &[char]) -> usize {
    match rest {
        ['\'', '\\', ..] => rest[3..].iter().position(|c| *c == '\'').map_or(rest.len(), |n| n + 4),
        ['\'', _, '\'', ..] => 3,
        _ => 0,
    }
}

/// The code with every item under `#[cfg(test)]` blanked out.
fn without_test_items(code: &str) -> String {
    const MARK: &str = "#[cfg(test)]";
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        let item = &rest[at + MARK.len()..];
        let end = test_item_len(item);
        out.push(' ');
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// The length of the item that opens `item` (after further attributes):
/// up to its `;` or to the brace that closes its body.
fn test_item_len(item: &str) -> usize {
    let bytes = item.as_bytes();
    let is_use = item.trim_start().starts_with("use ") || item.trim_start().starts_with("pub use ");
    let mut depth = 0usize;
    let mut square = 0usize;
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'[' => square += 1,
            b']' => square = square.saturating_sub(1),
            b';' if depth == 0 && square == 0 => return i + 1,
            b'{' if square == 0 => depth += 1,
            b'}' if square == 0 => {
                depth = depth.saturating_sub(1);
                if depth == 0 && !is_use {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    item.len()
}

#[test]
fn lib_rs_shows_the_same_floors() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).expect("lib.rs reads");
    let shown: Vec<Vec<String>> = lib
        .lines()
        .filter_map(|line| line.strip_prefix("//! | "))
        .filter(|row| row.starts_with(|c: char| c.is_ascii_digit()))
        .map(|row| row.split('`').skip(1).step_by(2).map(str::to_string).collect())
        .collect();
    let table: Vec<Vec<String>> = FLOORS
        .iter()
        .map(|floor| floor.iter().map(|m| m.to_string()).collect())
        .collect();
    assert_eq!(shown, table, "the floors table in src/lib.rs differs from FLOORS here");
}

// ---- the checker's own checks --------------------------------------------

#[test]
fn a_use_tree_yields_each_path_and_its_name() {
    let leaves = use_leaves(" crate::config::{self, Assignment as A, file::{write, *}}, super::x");
    let shown: Vec<String> = leaves
        .iter()
        .map(|(p, b)| format!("{}={}", p.join("::"), b.as_deref().unwrap_or("-")))
        .collect();
    assert_eq!(
        shown,
        [
            "crate::config=config",
            "crate::config::Assignment=A",
            "crate::config::file::write=write",
            "crate::config::file=-",
        ]
    );
}

#[test]
fn comments_literals_and_test_items_import_nothing() {
    let text = "use crate::a; // crate::b\n/* crate::c */ fn f() { let _ = \"crate::d\"; \
                let c = 'x'; g::<'static>(); }\n#[cfg(test)]\nmod tests { use crate::e; }\n\
                #[cfg(test)]\nuse crate::{f, g};\nfn h() { crate::i::j(); }";
    let code = without_test_items(&without_comments_and_literals(text));
    let (uses, rest) = split_use_items(&code);
    assert_eq!(uses.len(), 1, "{code}");
    let paths: Vec<String> = code_paths(&rest).iter().map(|p| p.join("::")).collect();
    assert_eq!(paths, ["crate::i::j"], "{code}");
}

#[test]
fn super_and_child_paths_resolve_to_modules() {
    let module = vec!["server".to_string(), "tls".to_string()];
    let children = BTreeSet::from(["inner".to_string()]);
    let bindings = BTreeMap::new();
    let path = |s: &str| s.split("::").map(str::to_string).collect::<Vec<_>>();
    let resolved = |s: &str| resolve(&module, &path(s), &children, &bindings).map(|p| p.join("::"));
    assert_eq!(resolved("super::spec::X").as_deref(), Some("server::spec::X"));
    assert_eq!(resolved("inner::f").as_deref(), Some("server::tls::inner::f"));
    assert_eq!(resolved("std::fs::read"), None);
}
