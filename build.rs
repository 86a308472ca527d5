//! Tells the integration tests whether a TorchServe is provisioned, so that
//! the ones that need it show as *ignored, with the reason* when it is not,
//! instead of passing without running. Under `CI=true` they always run (and
//! fail loudly when TorchServe is missing): CI must provision it.
//!
//! The same for the TensorZero gateway and the text models (`gateway_missing`)
//! and for PostgreSQL from the distribution (`postgres_missing`).
//!
//! Where TorchServe is looked for (as `tests/common/mod.rs` does):
//! `$SERVETUNE_TORCHSERVE`, else `$SERVETUNE_CACHE`/`$XDG_CACHE_HOME/servetune`/
//! `~/.cache/servetune`, `venv-ts-0.12.0/bin/torchserve`.

use std::path::PathBuf;

fn torchserve() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SERVETUNE_TORCHSERVE") {
        return Some(PathBuf::from(path));
    }
    let cache = match std::env::var_os("SERVETUNE_CACHE") {
        Some(cache) => PathBuf::from(cache),
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?
            .join("servetune"),
    };
    Some(cache.join("venv-ts-0.12.0/bin/torchserve"))
}

/// The distribution's PostgreSQL binaries (`/usr/lib/postgresql/N/bin`).
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file() && bin.join("pg_ctl").is_file())
        .collect();
    versions.sort();
    versions.pop()
}

fn main() {
    println!("cargo::rustc-check-cfg=cfg(torchserve_missing)");
    println!("cargo::rustc-check-cfg=cfg(gateway_missing)");
    println!("cargo::rustc-check-cfg=cfg(postgres_missing)");
    for variable in [
        "SERVETUNE_TORCHSERVE",
        "SERVETUNE_CACHE",
        "XDG_CACHE_HOME",
        "HOME",
        "CI",
    ] {
        println!("cargo::rerun-if-env-changed={variable}");
    }
    let store = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("examples/deployment/model-store/tiny.mar");
    let binary = torchserve();
    for path in binary.iter().chain([&store]) {
        println!("cargo::rerun-if-changed={}", path.display());
    }
    // The gateway and the text models: the setup script's stamp of the
    // venv's extras (tensorzero, transformers) and the two archives.
    let gateway_parts: Vec<PathBuf> = binary
        .iter()
        .filter_map(|b| b.parent()?.parent().map(|venv| venv.join(".servetune-extras")))
        .chain(["bert.mar", "gpt2.mar"].map(|m| store.with_file_name(m)))
        .collect();
    for path in &gateway_parts {
        println!("cargo::rerun-if-changed={}", path.display());
    }
    let present = binary.as_ref().is_some_and(|b| b.exists()) && store.exists();
    let in_ci = std::env::var("CI").as_deref() == Ok("true");
    if !present && !in_ci {
        println!("cargo::rustc-cfg=torchserve_missing");
    }
    let gateway_present = present && gateway_parts.len() == 3 && gateway_parts.iter().all(|p| p.exists());
    if !gateway_present && !in_ci {
        println!("cargo::rustc-cfg=gateway_missing");
    }
    // PostgreSQL from the distribution (initdb, pg_ctl) for the study store.
    println!("cargo::rerun-if-changed=/usr/lib/postgresql");
    if postgres_bin().is_none() && !in_ci {
        println!("cargo::rustc-cfg=postgres_missing");
    }
}
