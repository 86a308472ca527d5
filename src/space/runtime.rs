//! The `runtime` target: which export of the model TorchServe serves —
//! `eager` (`<model>.mar`: model.py and a state dict), `torchscript`
//! (`<model>-ts.mar`: a traced `.pt`) or `onnx` (`<model>-onnx.mar`: an
//! `.onnx` file run by onnxruntime). The value lands in `load_models`: the
//! study's model's entry becomes `<model>=<archive>`, so the model keeps its
//! name (and its `models={…}` settings) whatever archive serves it. TorchServe
//! reads `load_models` at start only: a cold parameter.
//!
//! Pure text functions; `target` and `domain` call them.

/// The runtimes, in the order a space lists them.
pub const RUNTIMES: [&str; 3] = ["eager", "torchscript", "onnx"];

/// The archive file name's suffix of each runtime.
fn suffix_of(runtime: &str) -> Option<&'static str> {
    match runtime {
        "eager" => Some(""),
        "torchscript" => Some("-ts"),
        "onnx" => Some("-onnx"),
        _ => None,
    }
}

/// The runtime an archive name says (`x-onnx.mar` → onnx) and its stem
/// without the runtime's suffix (`x`).
fn split_archive(archive: &str) -> (&'static str, &str) {
    let stem = archive.strip_suffix(".mar").unwrap_or(archive);
    for runtime in ["onnx", "torchscript"] {
        let suffix = suffix_of(runtime).expect("a runtime");
        if let Some(base) = stem.strip_suffix(suffix) {
            return (runtime, base);
        }
    }
    ("eager", stem)
}

/// One `load_models` entry: its model name (given, or the archive's stem)
/// and its archive.
fn entry_parts(entry: &str) -> (String, &str) {
    match entry.split_once('=') {
        Some((name, archive)) => (name.trim().to_string(), archive.trim()),
        None => {
            let archive = entry.trim();
            let file = archive.rsplit('/').next().unwrap_or(archive);
            (file.strip_suffix(".mar").unwrap_or(file).to_string(), archive)
        }
    }
}

/// The runtime `model` runs with under `load_models` (None when it is not listed).
pub fn runtime_in(load_models: &str, model: &str) -> Option<&'static str> {
    load_models
        .split(',')
        .map(entry_parts)
        .find(|(name, _)| name == model)
        .map(|(_, archive)| split_archive(archive).0)
}

/// `load_models` with `model`'s entry pointing at its `runtime` archive
/// (added when it is not listed). An eager entry written without a name
/// stays so: the default runtime leaves the file as it was.
pub fn with_runtime(load_models: &str, model: &str, runtime: &str) -> Result<String, String> {
    let suffix = suffix_of(runtime).ok_or_else(|| unknown(runtime))?;
    let mut found = false;
    let mut entries: Vec<String> = Vec::new();
    for entry in load_models.split(',').filter(|e| !e.trim().is_empty()) {
        let (name, archive) = entry_parts(entry);
        if name != model {
            entries.push(entry.trim().to_string());
            continue;
        }
        found = true;
        let (_, base) = split_archive(archive);
        let named = entry.contains('=');
        entries.push(if runtime == "eager" && !named {
            format!("{base}.mar")
        } else {
            format!("{model}={base}{suffix}.mar")
        });
    }
    if !found {
        entries.push(format!("{model}={model}{suffix}.mar"));
    }
    Ok(entries.join(","))
}

/// Why a value is not a runtime.
pub fn unknown(value: &str) -> String {
    format!("runtime takes one of {}, not '{value}'", RUNTIMES.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_picks_the_archive_of_the_study_model_only() {
        let listed = "tiny.mar,bert.mar";
        assert_eq!(runtime_in(listed, "tiny"), Some("eager"));
        assert_eq!(runtime_in(listed, "gpt2"), None);
        let onnx = with_runtime(listed, "tiny", "onnx").unwrap();
        assert_eq!(onnx, "tiny=tiny-onnx.mar,bert.mar");
        assert_eq!(runtime_in(&onnx, "tiny"), Some("onnx"));
        let scripted = with_runtime(&onnx, "tiny", "torchscript").unwrap();
        assert_eq!(scripted, "tiny=tiny-ts.mar,bert.mar");
        assert_eq!(runtime_in(&scripted, "tiny"), Some("torchscript"));
        assert_eq!(
            with_runtime(&scripted, "tiny", "eager").unwrap(),
            "tiny=tiny.mar,bert.mar"
        );
        // The default leaves an unnamed eager entry as written.
        assert_eq!(with_runtime(listed, "tiny", "eager").unwrap(), listed);
        assert_eq!(with_runtime("", "tiny", "onnx").unwrap(), "tiny=tiny-onnx.mar");
        assert_eq!(
            with_runtime("big=store/resnet.mar", "big", "onnx").unwrap(),
            "big=store/resnet-onnx.mar"
        );
        assert!(with_runtime(listed, "tiny", "tensorrt")
            .unwrap_err()
            .contains("eager, torchscript, onnx"));
    }
}
