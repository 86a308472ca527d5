//! `servetune init`: reads the deployment an operator already has and
//! writes a commented `target.toml`, `study.toml` and `space.toml` (into
//! `servetune/` by default) that `tune` accepts as they are. It prints what
//! it found and what it guessed, and never changes the deployment.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::load::request::read_bodies;
use crate::server::discover::{discover, sample_requests, Deployment, RunningServer};

/// The search spaces servetune ships (copied next to the study, to edit).
const CPU_SPACE: &str = include_str!("../../search-spaces/torchserve-cpu.toml");
const GPU_SPACE: &str = include_str!("../../search-spaces/torchserve-gpu.toml");

/// Where `init` writes by default, and where `tune` looks without `--study`.
pub const DEFAULT_DIR: &str = "servetune";

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The deployment's config.properties.
    #[arg(long, value_name = "FILE", default_value = "config.properties")]
    config: PathBuf,
    /// Sample requests: a file, or a directory of files (one request body each).
    #[arg(long, value_name = "FILE|DIR")]
    body: Option<PathBuf>,
    /// The model to tune (default: the first the config serves).
    #[arg(long)]
    model: Option<String>,
    /// Where to write target.toml, study.toml and space.toml.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DIR)]
    dir: PathBuf,
    /// Overwrite files an earlier `init` wrote.
    #[arg(long)]
    force: bool,
}

/// What `init` decided, and what it guessed (to print).
struct Plan {
    model: String,
    body: PathBuf,
    notes: Vec<String>,
}

pub fn run(args: InitArgs) -> anyhow::Result<()> {
    if !args.config.is_file() {
        bail!(
            "--config {}: no such file; run `servetune init` in the deployment's folder or pass --config PATH",
            args.config.display()
        );
    }
    let deployment = discover(&args.config)?;
    let plan = plan(&args, &deployment)?;
    let files = [
        ("target.toml", target_toml(&deployment, &plan)),
        ("study.toml", study_toml(&deployment, &plan)),
        ("space.toml", space_toml(&deployment).to_string()),
    ];
    let existing: Vec<String> = files
        .iter()
        .map(|(name, _)| args.dir.join(name))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !existing.is_empty() && !args.force {
        bail!(
            "{} already exist(s); pass --force to write them again",
            existing.join(", ")
        );
    }
    std::fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    for (name, text) in &files {
        let path = args.dir.join(name);
        crate::config::file::write_data_atomically(&path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "read {} (nothing in the deployment was changed)",
        deployment.config.display()
    );
    for note in &plan.notes {
        println!("  {note}");
    }
    println!(
        "wrote {}/{{target,study,space}}.toml; next: `servetune tune --budget 2h` in {}",
        args.dir.display(),
        std::env::current_dir().map_or(".".into(), |d| d.display().to_string())
    );
    Ok(())
}

fn plan(args: &InitArgs, deployment: &Deployment) -> anyhow::Result<Plan> {
    let config = deployment.config.display();
    let mut notes = Vec::new();
    let model = match &args.model {
        Some(model) if deployment.models.iter().any(|m| m == model) => model.clone(),
        Some(model) => bail!(
            "--model {model}: {config} serves {} (load_models and models={{…}})",
            if deployment.models.is_empty() {
                "no model".to_string()
            } else {
                deployment.models.join(", ")
            }
        ),
        None => match deployment.models.first() {
            Some(model) => {
                if deployment.models.len() > 1 {
                    notes.push(format!(
                        "model: {model}, the first of {} (guessed; choose with --model)",
                        deployment.models.join(", ")
                    ));
                }
                model.clone()
            }
            None => bail!("{config} names no model to tune: set load_models or models={{…}}, or pass --model"),
        },
    };
    notes.insert(0, format!("model: {model}"));
    let production = deployment.running.as_ref().and_then(|r| r.systemd_unit.as_ref());
    match (&deployment.model_store, production) {
        (_, Some(_)) => {}
        (Some(store), None) if store.is_dir() => notes.push(format!("model store: {}", store.display())),
        (Some(store), None) => bail!(
            "{config}: the model store {} does not exist; set model_store in the config",
            store.display()
        ),
        (None, None) => bail!(
            "{config}: no model store (no model_store property, no running TorchServe to ask, no model-store folder \
             beside the config); set model_store in the config"
        ),
    }
    let config_dir = deployment.config.parent().unwrap_or(Path::new("/"));
    let body = match &args.body {
        Some(body) => {
            read_bodies(body).with_context(|| format!("--body {}", body.display()))?;
            std::path::absolute(body).unwrap_or_else(|_| body.clone())
        }
        None => match sample_requests(&model, config_dir, deployment.model_store.as_deref()) {
            Some(found) => {
                notes.push(format!(
                    "sample requests: {} (found beside the deployment)",
                    found.display()
                ));
                found
            }
            None => bail!(
                "no sample requests found for model '{model}' (looked in bodies/{model}/ and samples/{model}/ beside \
                 the config and the model store, and {model}-samples/): pass --body FILE|DIR, one request body per \
                 file (for an image classifier, images)"
            ),
        },
    };
    notes.push(describe_control(deployment.running.as_ref()));
    notes.push(format!(
        "token authorization: {}",
        if deployment.endpoints.token_auth {
            "on (servetune reads key_file.json)"
        } else {
            "off"
        }
    ));
    if let Some(tls) = tls_guess(deployment) {
        notes.push(tls.note);
    }
    notes.push(if deployment.gpus > 0 {
        format!("{} GPU(s): the GPU search space", deployment.gpus)
    } else {
        format!("no GPU, {} logical CPUs: the CPU search space", deployment.cpus)
    });
    notes.push("objective: maximum throughput with p99 no worse than the current config's, errors ≤ 1% (edit study.toml to set an SLO)".into());
    Ok(Plan { model, body, notes })
}

fn describe_control(running: Option<&RunningServer>) -> String {
    match running {
        Some(RunningServer {
            pid,
            systemd_unit: Some(unit),
            ..
        }) => {
            format!("TorchServe runs now (pid {pid}) in systemd unit {unit}: restarted with systemctl restart {unit}")
        }
        Some(RunningServer { pid, cwd, .. }) => format!(
            "TorchServe runs now (pid {pid}, in {}): servetune will stop and start it there",
            cwd.display()
        ),
        None => "no TorchServe runs on this config now: servetune will start and stop it".into(),
    }
}

fn quoted(path: &Path) -> String {
    toml_string(&path.display().to_string())
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// The `torchserve` launcher of a running server, from its JVM's
/// `-Dmodel_server_home=<venv>/lib/pythonX/site-packages`.
fn launcher_of(pid: i32) -> Option<PathBuf> {
    let cmdline = procfs::process::Process::new(pid).ok()?.cmdline().ok()?;
    let home = cmdline.iter().find_map(|a| a.strip_prefix("-Dmodel_server_home="))?;
    let launcher = Path::new(home).ancestors().nth(3)?.join("bin/torchserve");
    launcher.is_file().then_some(launcher)
}

fn target_toml(deployment: &Deployment, _plan: &Plan) -> String {
    let mut t = String::from(
        "# The deployment servetune tunes, written by `servetune init` (edit freely).\n\
         # Paths are absolute or relative to this file.\n",
    );
    let _ = writeln!(t, "config = {}", quoted(&deployment.config));
    match &deployment.running {
        Some(running) if running.systemd_unit.is_some() => {
            let unit = running.systemd_unit.as_deref().unwrap_or_default();
            let _ = writeln!(
                t,
                "# TorchServe runs in systemd unit {unit}: servetune restarts it through it (an argv, no shell)\n\
                 # and never starts or stops it otherwise.\n\
                 restart_command = [\"systemctl\", \"restart\", {}]\n\
                 # TorchServe writes its keys into its working directory.\n\
                 key_file = {}",
                toml_string(unit),
                quoted(&running.cwd.join("key_file.json"))
            );
        }
        running => {
            let store = running
                .as_ref()
                .and_then(|r| r.model_store.clone())
                .or_else(|| deployment.model_store.clone())
                .unwrap_or_default();
            let _ = writeln!(t, "model_store = {}", quoted(&store));
            match running {
                Some(r) => {
                    let _ = writeln!(
                        t,
                        "# The folder TorchServe runs in now: its key_file.json, logs/ and pid file.\nwork_dir = {}",
                        quoted(&r.cwd)
                    );
                    if let Some(launcher) = launcher_of(r.pid) {
                        let _ = writeln!(t, "torchserve = {}", quoted(&launcher));
                    }
                }
                None => {
                    t.push_str(
                        "# servetune starts TorchServe here: key_file.json, logs/, tmp/ (its pid file).\n\
                         work_dir = \"run\"\n\
                         # torchserve = \"/path/to/venv/bin/torchserve\"   # default: $SERVETUNE_TORCHSERVE, else PATH\n",
                    );
                }
            }
        }
    }
    t.push_str("ready_timeout = \"120s\"\n");
    if let Some(tls) = tls_guess(deployment) {
        t.push_str(&tls.toml);
    }
    t
}

/// The TLS keys of an https deployment's target file.
fn tls_guess(deployment: &Deployment) -> Option<crate::server::tls::InitGuess> {
    let config_dir = deployment.config.parent().unwrap_or(Path::new("/"));
    crate::server::tls::guess_for_init(&deployment.properties, &deployment.endpoints, config_dir)
}

fn study_toml(deployment: &Deployment, plan: &Plan) -> String {
    let mut s = String::from(
        "# A study of the deployment, written by `servetune init` (edit freely).\n\
         # `servetune tune --budget 2h` in the folder above reads this file.\n",
    );
    let _ = writeln!(s, "name = {}", toml_string(&plan.model));
    s.push_str("target = \"target.toml\"\nspace = \"space.toml\"\n");
    let _ = writeln!(s, "model = {}", toml_string(&plan.model));
    let _ = writeln!(
        s,
        "budget = \"2h\"\n\n[workload]\n# One request body per file, sent round-robin.\nbody = {}\n\
         # Concurrent users (closed loop): set it to your traffic's concurrency, or use rate = N (requests/s).\n\
         users = 16\n\
         # Windows scale with the budget unless set (3 to 10 s; 2h: 10 s):\n\
         # duration = \"10s\"\n# warmup = \"2s\"\n# confirm_duration = \"10s\"\n\
         confirm_top = 3\nconfirm_rounds = 3\n\n\
         [constraints]\n# \"baseline\": no candidate may have a worse p99 than the config as it is now\n\
         # (measured at the start of the study). Or an SLO in milliseconds: p99_ms = 50\n\
         p99_ms = \"baseline\"\nerror_rate = 0.01",
        quoted(&plan.body)
    );
    if deployment.gpus > 0 {
        s.push_str("# Each worker holds the model in GPU memory: consider memory_mb = …\n");
    }
    s
}

fn space_toml(deployment: &Deployment) -> &'static str {
    if deployment.gpus > 0 {
        GPU_SPACE
    } else {
        CPU_SPACE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment_in(dir: &Path, config: &str) -> Deployment {
        let path = dir.join("config.properties");
        std::fs::write(&path, config).unwrap();
        std::fs::create_dir_all(dir.join("model-store")).unwrap();
        discover(&path).unwrap()
    }

    #[test]
    fn the_files_written_are_accepted_by_tune() {
        let dir = tempfile::tempdir().unwrap();
        let deployment = deployment_in(
            dir.path(),
            "inference_address=http://127.0.0.1:8080\nload_models=tiny.mar\nmodel_store=model-store\n",
        );
        std::fs::create_dir_all(dir.path().join("bodies/tiny")).unwrap();
        std::fs::write(dir.path().join("bodies/tiny/a.bin"), b"x").unwrap();
        let args = InitArgs {
            config: deployment.config.clone(),
            body: None,
            model: None,
            dir: dir.path().join("servetune"),
            force: false,
        };
        let plan = plan(&args, &deployment).unwrap();
        assert_eq!(plan.model, "tiny");
        let out = dir.path().join("servetune");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("target.toml"), target_toml(&deployment, &plan)).unwrap();
        std::fs::write(out.join("study.toml"), study_toml(&deployment, &plan)).unwrap();
        std::fs::write(out.join("space.toml"), space_toml(&deployment)).unwrap();
        let spec = crate::server::TargetSpec::load(&out.join("target.toml")).unwrap();
        assert_eq!(spec.config, deployment.config);
        let settings = crate::study::settings::Settings::load(&out.join("study.toml"), &Default::default()).unwrap();
        assert!(settings.p99_from_baseline);
        assert_eq!(settings.model, "tiny");
        crate::space::load_spaces(&settings.spaces).unwrap();
    }

    #[test]
    fn a_model_the_config_lacks_or_no_samples_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let deployment = deployment_in(dir.path(), "load_models=tiny.mar\nmodel_store=model-store\n");
        let mut args = InitArgs {
            config: deployment.config.clone(),
            body: None,
            model: Some("big".into()),
            dir: dir.path().join("servetune"),
            force: false,
        };
        let e = plan(&args, &deployment).err().unwrap().to_string();
        assert!(e.contains("--model big") && e.contains("tiny"), "{e}");
        args.model = None;
        let e = plan(&args, &deployment).err().unwrap().to_string();
        assert!(e.contains("--body") && e.contains("tiny"), "{e}");
        let none = deployment_in(dir.path(), "model_store=model-store\n");
        let e = plan(&args, &none).err().unwrap().to_string();
        assert!(e.contains("names no model"), "{e}");
        let no_store = deployment_in(dir.path(), "load_models=tiny.mar\nmodel_store=/nonexistent/store\n");
        let e = plan(&args, &no_store).err().unwrap().to_string();
        assert!(e.contains("model store") && e.contains("/nonexistent/store"), "{e}");
    }
}
