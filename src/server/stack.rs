//! A stack file: a TorchServe target and the TensorZero gateway in front of
//! it, with the models to load through both and how (route, request body,
//! latency objective). Read by `servetune compare`.
//!
//! ```toml
//! torchserve = "target.toml"          # a TorchServe target, as `tune` takes
//! [gateway]
//! config = "tensorzero.toml"
//! # python = ".../bin/python"         # default: the python beside the target's torchserve
//! # Production: a service manager runs the gateway; servetune restarts it
//! # with this argv (never a shell) and finds it at url.
//! # restart_command = ["systemctl", "restart", "tensorzero-gateway"]
//! # url = "http://127.0.0.1:3000"
//! [gateway.environment]                # (managed gateways only)
//! TOKIO_WORKER_THREADS = "2"
//! [[models]]
//! name = "gpt2"
//! route = "chat/completions"          # or "embeddings"
//! body = "bodies/gpt2-chat.json"      # a file, or a folder of files sent round-robin
//! p99_ms = 2000                       # the SLO of the capacity search
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde::Deserialize;

use super::gateway::{GatewayService, GatewaySpec};
use super::spec::{Control, TargetSpec};

/// The two routes the gateway serves.
pub const ROUTES: [&str; 2] = ["chat/completions", "embeddings"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StackFile {
    torchserve: PathBuf,
    gateway: GatewayFile,
    #[serde(default)]
    models: Vec<ModelFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GatewayFile {
    config: PathBuf,
    python: Option<PathBuf>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    restart_command: Option<Vec<String>>,
    url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFile {
    name: String,
    route: String,
    body: PathBuf,
    #[serde(default = "default_version")]
    version: String,
    p99_ms: f64,
}

fn default_version() -> String {
    "1.0".into()
}

/// The gateway's service (restart_command and url), checked.
fn service_of(gateway: &GatewayFile) -> Result<Option<GatewayService>, String> {
    let (argv, url) = match (&gateway.restart_command, &gateway.url) {
        (None, None) => return Ok(None),
        (Some(argv), Some(url)) => (argv, url),
        (Some(_), None) => return Err("restart_command needs url (where the gateway listens)".into()),
        (None, Some(_)) => return Err("url needs restart_command (how to restart the gateway)".into()),
    };
    if argv.first().is_none_or(|program| program.trim().is_empty()) {
        return Err("restart_command must name a program: [\"systemctl\", \"restart\", \"tensorzero-gateway\"]".into());
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("url '{url}': {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("url '{url}': an http(s) URL such as http://127.0.0.1:3000"));
    }
    if !gateway.environment.is_empty() {
        return Err(
            "[gateway.environment] cannot be set when a service manager starts the gateway: set it in the \
             service (e.g. Environment= in its unit)"
                .into(),
        );
    }
    Ok(Some(GatewayService {
        restart_command: argv.clone(),
        url: url.trim_end_matches('/').to_string(),
    }))
}

/// One model of the stack.
#[derive(Debug, Clone, PartialEq)]
pub struct StackModel {
    pub name: String,
    /// `chat/completions` or `embeddings`.
    pub route: String,
    pub body: PathBuf,
    /// The version segment of TorchServe's OpenAI-style path.
    pub version: String,
    pub p99_ms: f64,
}

impl StackModel {
    /// TorchServe's path for the route, what the gateway's provider calls.
    pub fn direct_path(&self) -> String {
        format!("/predictions/{}/{}/v1/{}", self.name, self.version, self.route)
    }
}

/// A validated stack file.
#[derive(Debug, Clone)]
pub struct StackSpec {
    pub source: PathBuf,
    pub torchserve: TargetSpec,
    pub gateway: GatewaySpec,
    pub models: Vec<StackModel>,
}

impl StackSpec {
    /// Reads and checks a stack file; errors name it (and the line, for syntax).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: StackFile =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let resolve = |p: &Path| std::path::absolute(base.join(p)).unwrap_or_else(|_| base.join(p));
        let torchserve = TargetSpec::load(&resolve(&file.torchserve))?;
        let service = service_of(&file.gateway).map_err(|e| anyhow::anyhow!("{}: [gateway] {e}", path.display()))?;
        let python = match (&file.gateway.python, &torchserve.control) {
            (Some(python), _) => resolve(python),
            (None, Control::Managed { torchserve, .. }) => GatewaySpec::python_beside(torchserve),
            (None, Control::RestartCommand { .. }) => PathBuf::from("python3"),
        };
        if service.is_none() && file.gateway.python.is_none() && !matches!(torchserve.control, Control::Managed { .. })
        {
            bail!(
                "{}: [gateway] python is needed when TorchServe is not managed (or restart_command and url, \
                 when a service manager runs the gateway)",
                path.display()
            );
        }
        let mut models = Vec::new();
        for model in file.models {
            if model.name.trim().is_empty() || model.name.contains(['/', ' ']) {
                bail!(
                    "{}: model name '{}' is not a TorchServe model name",
                    path.display(),
                    model.name
                );
            }
            if !ROUTES.contains(&model.route.as_str()) {
                bail!(
                    "{}: model {}: route '{}' is not one the gateway serves ({})",
                    path.display(),
                    model.name,
                    model.route,
                    ROUTES.join(", ")
                );
            }
            if !(model.p99_ms.is_finite() && model.p99_ms > 0.0) {
                bail!("{}: model {}: p99_ms must be > 0", path.display(), model.name);
            }
            if models.iter().any(|m: &StackModel| m.name == model.name) {
                bail!("{}: model {} is listed twice", path.display(), model.name);
            }
            models.push(StackModel {
                body: resolve(&model.body),
                name: model.name,
                route: model.route,
                version: model.version,
                p99_ms: model.p99_ms,
            });
        }
        if models.is_empty() {
            bail!("{}: name at least one [[models]]", path.display());
        }
        Ok(Self {
            source: path.to_path_buf(),
            torchserve,
            gateway: GatewaySpec {
                python,
                config: resolve(&file.gateway.config),
                environment: file.gateway.environment,
                service,
            },
            models,
        })
    }

    /// Checks that the gateway's config routes each model to this
    /// TorchServe: a chat model is `[models.NAME]`, an embedding model
    /// `[embedding_models.NAME]`, and every provider's `api_base` is the
    /// model's versioned path on `inference` (TorchServe's inference URL).
    pub fn check_gateway_routes(&self, models: &[StackModel], inference: &str) -> anyhow::Result<()> {
        let config = &self.gateway.config;
        let text = std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
        let gateway: toml::Table =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", config.display(), e.to_string().trim_end()))?;
        for model in models {
            let section = if model.route == "embeddings" {
                "embedding_models"
            } else {
                "models"
            };
            let Some(entry) = gateway.get(section).and_then(|t| t.get(&model.name)) else {
                bail!(
                    "{}: no [{section}.{}]: the gateway cannot route {} (route {})",
                    config.display(),
                    model.name,
                    model.name,
                    model.route
                );
            };
            let expected = format!(
                "{}{}/",
                inference.trim_end_matches('/'),
                model.direct_path().trim_end_matches(&format!("/{}", model.route))
            );
            let providers = entry.get("providers").and_then(|p| p.as_table());
            for (provider, settings) in providers.into_iter().flatten() {
                let Some(api_base) = settings.get("api_base").and_then(|b| b.as_str()) else {
                    continue;
                };
                if api_base.trim_end_matches('/') != expected.trim_end_matches('/') {
                    bail!(
                        "{}: {section}.{}.providers.{provider}.api_base is {api_base}, but TorchServe ({}) serves {} at {expected}",
                        config.display(),
                        model.name,
                        self.torchserve.config.display(),
                        model.name
                    );
                }
            }
        }
        Ok(())
    }

    /// The models named in `wanted` (all, in file order, when None); an
    /// unknown name is an error that lists the known ones.
    pub fn select(&self, wanted: Option<&[String]>) -> anyhow::Result<Vec<StackModel>> {
        let Some(wanted) = wanted else {
            return Ok(self.models.clone());
        };
        wanted
            .iter()
            .map(|name| {
                self.models.iter().find(|m| &m.name == name).cloned().ok_or_else(|| {
                    anyhow::anyhow!(
                        "--models: {} has no model '{name}' (it has: {})",
                        self.source.display(),
                        self.models
                            .iter()
                            .map(|m| m.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack_in(dir: &Path, models: &str, gateway: &str) -> PathBuf {
        std::fs::write(
            dir.join("config.properties"),
            "inference_address=http://127.0.0.1:8100\nmanagement_address=http://127.0.0.1:8101\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("target.toml"),
            "config = \"config.properties\"\nmodel_store = \"store\"\ntorchserve = \"/opt/ts/bin/torchserve\"\n",
        )
        .unwrap();
        std::fs::write(dir.join("tensorzero.toml"), gateway).unwrap();
        let stack = dir.join("stack.toml");
        std::fs::write(
            &stack,
            format!("torchserve = \"target.toml\"\n[gateway]\nconfig = \"tensorzero.toml\"\n{models}"),
        )
        .unwrap();
        stack
    }

    const BERT: &str = "[[models]]\nname = \"bert\"\nroute = \"embeddings\"\nbody = \"b.json\"\np99_ms = 500\n";

    #[test]
    fn a_stack_file_resolves_paths_and_finds_the_python() {
        let dir = tempfile::tempdir().unwrap();
        let stack = StackSpec::load(&stack_in(dir.path(), BERT, "")).unwrap();
        assert_eq!(stack.gateway.python, PathBuf::from("/opt/ts/bin/python"));
        assert_eq!(
            stack.models[0].body,
            std::path::absolute(dir.path().join("b.json")).unwrap()
        );
        assert_eq!(stack.models[0].direct_path(), "/predictions/bert/1.0/v1/embeddings");
        assert!(stack
            .select(Some(&["gpt2".to_string()]))
            .unwrap_err()
            .to_string()
            .contains("it has: bert"));
    }

    #[test]
    fn bad_stack_files_are_refused_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        for (models, says) in [
            ("", "at least one [[models]]"),
            (
                &BERT.replace("embeddings", "completions") as &str,
                "route 'completions'",
            ),
            (&BERT.replace("500", "0"), "p99_ms must be > 0"),
            (&format!("{BERT}{BERT}"), "listed twice"),
            (&BERT.replace("p99_ms", "p99"), "unknown field"),
        ] {
            let error = StackSpec::load(&stack_in(dir.path(), models, ""))
                .unwrap_err()
                .to_string();
            assert!(error.contains("stack.toml") && error.contains(says), "{says}: {error}");
        }
    }

    #[test]
    fn the_gateway_config_must_route_each_model_to_this_torchserve() {
        let dir = tempfile::tempdir().unwrap();
        let good = "[embedding_models.bert.providers.ts]\ntype = \"openai\"\n\
                    api_base = \"http://127.0.0.1:8100/predictions/bert/1.0/v1/\"\n";
        let stack = StackSpec::load(&stack_in(dir.path(), BERT, good)).unwrap();
        stack
            .check_gateway_routes(&stack.models, "http://127.0.0.1:8100")
            .unwrap();
        let moved = stack
            .check_gateway_routes(&stack.models, "http://127.0.0.1:9999")
            .unwrap_err()
            .to_string();
        assert!(
            moved.contains("embedding_models.bert.providers.ts.api_base") && moved.contains("9999"),
            "{moved}"
        );
        let stack = StackSpec::load(&stack_in(dir.path(), BERT, "[models.bert]\n")).unwrap();
        let missing = stack
            .check_gateway_routes(&stack.models, "http://127.0.0.1:8100")
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("tensorzero.toml: no [embedding_models.bert]"),
            "{missing}"
        );
    }

    #[test]
    fn a_service_gateway_needs_a_command_and_a_url() {
        let dir = tempfile::tempdir().unwrap();
        let stack_with = |gateway: &str| {
            let path = stack_in(dir.path(), BERT, "");
            let text = std::fs::read_to_string(&path).unwrap().replace(
                "config = \"tensorzero.toml\"\n",
                &format!("config = \"tensorzero.toml\"\n{gateway}"),
            );
            std::fs::write(&path, text).unwrap();
            StackSpec::load(&path)
        };
        let good =
            stack_with("restart_command = [\"systemctl\", \"restart\", \"tz\"]\nurl = \"http://127.0.0.1:3000/\"\n")
                .unwrap();
        let service = good.gateway.service.unwrap();
        assert_eq!(service.url, "http://127.0.0.1:3000");
        assert_eq!(service.restart_command[0], "systemctl");
        for (gateway, says) in [
            ("restart_command = [\"x\"]\n", "needs url"),
            ("url = \"http://127.0.0.1:3000\"\n", "needs restart_command"),
            (
                "restart_command = []\nurl = \"http://127.0.0.1:3000\"\n",
                "must name a program",
            ),
            ("restart_command = [\"x\"]\nurl = \"ftp://h\"\n", "http(s) URL"),
            (
                "restart_command = [\"x\"]\nurl = \"http://h:1\"\n[gateway.environment]\nRUST_LOG = \"warn\"\n",
                "Environment=",
            ),
        ] {
            let error = stack_with(gateway).unwrap_err().to_string();
            assert!(
                error.contains("stack.toml: [gateway]") && error.contains(says),
                "{says}: {error}"
            );
        }
    }
}
