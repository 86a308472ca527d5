//! The target description file: what the server under tuning is and how it
//! is started or restarted. `apply`, `bench` and `tune` all read it.
//!
//! ```toml
//! config = "config.properties"        # paths are relative to this file
//! model_store = "model-store"
//! work_dir = "run"                    # TorchServe's cwd: key_file.json, logs/, tmp/
//! # torchserve = "/opt/ts/bin/torchserve"   # default: $SERVETUNE_TORCHSERVE, else PATH
//! # restart_command = ["systemctl", "restart", "torchserve"]   # production mode
//! ready_timeout = "120s"
//! # ca_file = "ca.pem"                 # https addresses: the CA of TorchServe's certificate
//! # insecure_tls = true               # …or check no certificate (self-signed, tests only)
//!
//! [environment]                       # set for TorchServe and its workers (managed mode)
//! OMP_NUM_THREADS = "1"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::error::ServerError;
use crate::load::tls::{read_ca_file, Verification};

/// The file as written (syntax only).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetFile {
    config: PathBuf,
    model_store: Option<PathBuf>,
    work_dir: Option<PathBuf>,
    key_file: Option<PathBuf>,
    torchserve: Option<PathBuf>,
    #[serde(default)]
    extra_args: Vec<String>,
    restart_command: Option<Vec<String>>,
    #[serde(default, with = "humantime_serde")]
    ready_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    stop_timeout: Option<Duration>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    ca_file: Option<PathBuf>,
    insecure_tls: Option<bool>,
}

/// How servetune controls the server's lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// servetune starts and stops TorchServe itself.
    Managed {
        torchserve: PathBuf,
        model_store: PathBuf,
        work_dir: PathBuf,
        extra_args: Vec<String>,
    },
    /// Production: the server is restarted by running this argv (no shell);
    /// servetune never starts or stops it otherwise.
    RestartCommand { argv: Vec<String> },
}

impl Control {
    /// Whether servetune starts TorchServe itself, and so sets the
    /// environment it starts with (a service sets its own).
    pub fn sets_environment(&self) -> bool {
        matches!(self, Control::Managed { .. })
    }

    /// Whether servetune starts and stops TorchServe itself (a managed
    /// server), rather than a service manager through `restart_command`.
    pub fn starts_server(&self) -> bool {
        matches!(self, Control::Managed { .. })
    }

    /// The folder a managed TorchServe runs in (its logs and pid file); a
    /// service's is its own.
    pub fn work_dir(&self) -> Option<&Path> {
        match self {
            Control::Managed { work_dir, .. } => Some(work_dir),
            Control::RestartCommand { .. } => None,
        }
    }

    /// The TorchServe executable and model store servetune starts a managed
    /// server with.
    pub fn launcher(&self) -> Option<(&Path, &Path)> {
        match self {
            Control::Managed {
                torchserve,
                model_store,
                ..
            } => Some((torchserve, model_store)),
            Control::RestartCommand { .. } => None,
        }
    }
}

/// A validated target: absolute paths, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    pub source: PathBuf,
    pub config: PathBuf,
    pub control: Control,
    /// TorchServe's `key_file.json` (token authorization).
    pub key_file: PathBuf,
    pub ready_timeout: Duration,
    pub stop_timeout: Duration,
    /// Environment variables servetune starts TorchServe with (managed mode).
    pub environment: BTreeMap<String, String>,
    /// How TorchServe's certificate is checked where its addresses are https.
    pub tls: Verification,
}

pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(120);
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);

impl TargetSpec {
    /// Reads and validates a target file; errors name the file (and the line
    /// for syntax errors).
    pub fn load(path: &Path) -> Result<Self, ServerError> {
        let invalid = |reason: String| ServerError::Spec {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
        let file: TargetFile = toml::from_str(&text).map_err(|e| invalid(e.to_string().trim_end().to_string()))?;
        let base = absolute(
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        );
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let config = resolve(&file.config);
        let work_dir = resolve(file.work_dir.as_deref().unwrap_or(Path::new("run")));
        let control = match file.restart_command {
            Some(argv) => {
                if argv.is_empty() || argv.iter().any(|a| a.trim().is_empty()) {
                    return Err(invalid(
                        "restart_command must name a program, and none of its arguments may be blank".into(),
                    ));
                }
                if file.model_store.is_some()
                    || file.torchserve.is_some()
                    || !file.extra_args.is_empty()
                    || !file.environment.is_empty()
                {
                    return Err(invalid(
                        "restart_command (production mode) excludes model_store, torchserve, extra_args and \
                         [environment]: the service manager starts TorchServe (set its environment there)"
                            .into(),
                    ));
                }
                Control::RestartCommand { argv }
            }
            None => {
                let model_store = file
                    .model_store
                    .as_deref()
                    .map(resolve)
                    .ok_or_else(|| invalid("model_store is required unless restart_command is set".into()))?;
                let torchserve = match file.torchserve {
                    Some(program) if program.components().count() > 1 => resolve(&program),
                    Some(program) => program,
                    None => std::env::var_os("SERVETUNE_TORCHSERVE")
                        .map(PathBuf::from)
                        .unwrap_or_else(|| PathBuf::from("torchserve")),
                };
                Control::Managed {
                    torchserve,
                    model_store,
                    work_dir: work_dir.clone(),
                    extra_args: file.extra_args,
                }
            }
        };
        let key_file = match (file.key_file, &control) {
            (Some(key_file), _) => resolve(&key_file),
            (None, Control::Managed { work_dir, .. }) => work_dir.join("key_file.json"),
            (None, Control::RestartCommand { .. }) => work_dir.join("key_file.json"),
        };
        if let Some((name, _)) = file
            .environment
            .iter()
            .find(|(name, value)| name.is_empty() || name.contains(['=', '\0']) || value.contains(['\0', '\n']))
        {
            return Err(invalid(format!("[environment] {name}: not a usable variable")));
        }
        let tls = verification_of(file.ca_file.as_deref().map(resolve), file.insecure_tls).map_err(invalid)?;
        Ok(Self {
            tls,
            source: path.to_path_buf(),
            config,
            control,
            key_file,
            environment: file.environment,
            ready_timeout: file.ready_timeout.unwrap_or(DEFAULT_READY_TIMEOUT),
            stop_timeout: file.stop_timeout.unwrap_or(DEFAULT_STOP_TIMEOUT),
        })
    }
}

impl TargetSpec {
    /// Writes `environment` as the target file's `[environment]` table,
    /// editing the file losslessly (comments and layout kept) and safely
    /// (temp file, rename, backup in `.servetune/`).
    pub fn write_environment(&self, environment: &BTreeMap<String, String>) -> Result<(), ServerError> {
        if self.environment == *environment {
            return Ok(());
        }
        let path = &self.source;
        let invalid = |reason: String| ServerError::Spec {
            path: path.clone(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
        let mut document: toml_edit::DocumentMut =
            text.parse().map_err(|e: toml_edit::TomlError| invalid(e.to_string()))?;
        let table = document
            .entry("environment")
            .or_insert(toml_edit::table())
            .as_table_mut()
            .ok_or_else(|| invalid("environment is not a table".into()))?;
        let stale: Vec<String> = table
            .iter()
            .map(|(k, _)| k.to_string())
            .filter(|k| !environment.contains_key(k))
            .collect();
        for name in stale {
            table.remove(&name);
        }
        for (name, value) in environment {
            if table.get(name).and_then(|v| v.as_str()) != Some(value.as_str()) {
                table[name.as_str()] = toml_edit::value(value.as_str());
            }
        }
        let mut file = crate::config::ConfigFile::read(path)?;
        file.write(document.to_string().as_bytes())?;
        Ok(())
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The verification the target file's `ca_file` (already resolved against
/// the target file's folder) and `insecure_tls` ask for.
pub fn verification_of(ca_file: Option<PathBuf>, insecure_tls: Option<bool>) -> Result<Verification, String> {
    match (ca_file, insecure_tls.unwrap_or(false)) {
        (Some(path), true) => Err(format!(
            "ca_file ({}) and insecure_tls = true are both set: keep ca_file to check TorchServe's \
             certificate, or insecure_tls to check nothing, not both",
            path.display()
        )),
        (Some(path), false) => match read_ca_file(&path) {
            Ok(_) => Ok(Verification::CaFile(path)),
            Err(e) => Err(format!(
                "ca_file {}: {e}; it must be the PEM file of the CA that signed TorchServe's \
                 certificate (or of the certificate itself)",
                path.display()
            )),
        },
        (None, true) => Ok(Verification::Insecure),
        (None, false) => Ok(Verification::WebPki),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<TargetSpec, ServerError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("target.toml");
        std::fs::write(&path, text).unwrap();
        TargetSpec::load(&path)
    }

    #[test]
    fn managed_paths_are_relative_to_the_file() {
        let spec = load("config = \"c.properties\"\nmodel_store = \"store\"\nready_timeout = \"90s\"\n").unwrap();
        let base = spec.source.parent().unwrap().to_path_buf();
        assert_eq!(spec.config, base.join("c.properties"));
        assert_eq!(spec.key_file, base.join("run/key_file.json"));
        assert_eq!(spec.ready_timeout, Duration::from_secs(90));
        assert!(matches!(spec.control, Control::Managed { ref model_store, .. } if *model_store == base.join("store")));
    }

    #[test]
    fn production_mode_takes_an_argv() {
        let spec = load(
            "config = \"/etc/ts/config.properties\"\nrestart_command = [\"systemctl\", \"restart\", \"torchserve\"]\nkey_file = \"/var/lib/ts/key_file.json\"\n",
        )
        .unwrap();
        assert_eq!(
            spec.control,
            Control::RestartCommand {
                argv: vec!["systemctl".into(), "restart".into(), "torchserve".into()]
            }
        );
        assert_eq!(spec.key_file, PathBuf::from("/var/lib/ts/key_file.json"));
    }

    #[test]
    fn the_environment_is_written_losslessly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("target.toml");
        let text = "# my deployment\nconfig = \"c.properties\"  # the config\nmodel_store = \"s\"\n\n[environment]\nKEEP = \"1\"  # why\nDROP = \"x\"\n";
        std::fs::write(&path, text).unwrap();
        let spec = TargetSpec::load(&path).unwrap();
        assert_eq!(spec.environment.get("KEEP").map(String::as_str), Some("1"));
        let wanted: BTreeMap<String, String> = [
            ("KEEP".to_string(), "1".to_string()),
            ("OMP_NUM_THREADS".to_string(), "2".to_string()),
        ]
        .into();
        spec.write_environment(&wanted).unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(
            written.starts_with("# my deployment\nconfig = \"c.properties\"  # the config\n"),
            "{written}"
        );
        assert!(
            written.contains("KEEP = \"1\"  # why") && !written.contains("DROP"),
            "{written}"
        );
        assert_eq!(TargetSpec::load(&path).unwrap().environment, wanted);
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let error = load("config = \"c\"\nmodel_store = \"s\"\nbogus = 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("target.toml") && error.contains("line 3") && error.contains("bogus"),
            "{error}"
        );
        let error = load("config = \"c\"\n").unwrap_err().to_string();
        assert!(error.contains("model_store is required"), "{error}");
        let error = load("config = \"c\"\nrestart_command = []\n").unwrap_err().to_string();
        assert!(error.contains("restart_command"), "{error}");
        let error = load("config = \"c\"\nrestart_command = [\"  \"]\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("blank"), "{error}");
    }

    #[test]
    fn keys_give_one_verification_or_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, certified.cert.pem()).unwrap();
        assert_eq!(verification_of(None, None), Ok(Verification::WebPki));
        assert_eq!(verification_of(None, Some(true)), Ok(Verification::Insecure));
        assert_eq!(
            verification_of(Some(ca.clone()), Some(false)),
            Ok(Verification::CaFile(ca.clone()))
        );
        let both = verification_of(Some(ca.clone()), Some(true)).unwrap_err();
        assert!(both.contains("both set"), "{both}");
        let missing = verification_of(Some(dir.path().join("nope.pem")), None).unwrap_err();
        assert!(
            missing.contains("nope.pem") && missing.contains("cannot read"),
            "{missing}"
        );
        let key = dir.path().join("key.pem");
        std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
        let not_certificate = verification_of(Some(key), None).unwrap_err();
        assert!(not_certificate.contains("no PEM certificate"), "{not_certificate}");
    }
}
