//! The TensorZero gateway of a stack study: where the study's load enters
//! (the model's OpenAI-style route on the gateway), and a process servetune
//! runs on the state a trial asks for. Its `tensorzero.toml` is edited in
//! place like `config.properties` (atomic writes, servetune's backup of the
//! original), and every change is a restart of the gateway alone, which
//! takes a fraction of a second. A gateway that does not come up on a new
//! config gets its previous file back and is started on it again.
//!
//! A managed gateway is servetune's own: started for the study, stopped at
//! its end. TorchServe's inference key is handed to it in
//! `TORCHSERVE_INFERENCE_KEY` (its providers read it with `api_key_location
//! = "env::TORCHSERVE_INFERENCE_KEY"`); TorchServe makes a new key at each
//! start, so the runner restarts the gateway after every TorchServe restart.
//! A service's gateway (production) is restarted with its restart command
//! and left running on the final config.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;

use crate::apply::converge::FrontGateway;
use crate::apply::state::GatewayState;
use crate::config::ConfigFile;
use crate::server::gateway::{inference_key, Gateway, GatewaySpec, INFERENCE_KEY_VARIABLE};
use crate::server::TorchServe;

/// The study's gateway and what it runs.
pub struct StudyGateway {
    spec: GatewaySpec,
    /// The model's route below the gateway's base URL (`embeddings`, …).
    route: String,
    running: Option<Gateway>,
    /// The state it runs (None: not running, or unknown).
    state: Option<GatewayState>,
}

impl StudyGateway {
    pub fn new(spec: &GatewaySpec, route: &str) -> Self {
        Self {
            spec: spec.clone(),
            route: route.to_string(),
            running: None,
            state: None,
        }
    }

    pub fn config_path(&self) -> &Path {
        &self.spec.config
    }

    /// Whether a service manager runs the gateway (production).
    pub fn is_service(&self) -> bool {
        self.spec.service.is_some()
    }

    /// Gets the gateway running on `original` before the study: a managed
    /// one is started; a service's, when its file is `original` already,
    /// is taken as it runs (no restart of production for nothing).
    pub async fn begin(&mut self, original: &GatewayState, server: &TorchServe) -> anyhow::Result<()> {
        if let Some(service) = &self.spec.service {
            let on_disk = std::fs::read(&self.spec.config).ok();
            if on_disk.as_deref() == Some(original.config.as_slice()) {
                if let Ok(gateway) = Gateway::attach(service).await {
                    self.running = Some(gateway);
                    self.state = Some(original.clone());
                    return Ok(());
                }
            }
        }
        self.restart_on(original, server).await
    }

    /// The state it runs now, if known.
    pub fn state(&self) -> Option<&GatewayState> {
        self.state.as_ref()
    }

    /// Where the study's load goes: the model's route on the gateway.
    pub fn url(&self) -> Option<String> {
        self.running
            .as_ref()
            .map(|gateway| format!("{}/{}", gateway.base_url, self.route))
    }

    /// The gateway process (its tree's memory counts with TorchServe's).
    pub fn pid(&self) -> Option<i32> {
        self.running.as_ref().and_then(Gateway::pid)
    }

    /// Restarts the gateway on `state`, with `server`'s inference key. On
    /// failure the previous file is put back and the gateway started on it
    /// again (when it ran before); the error says what failed.
    pub async fn restart_on(&mut self, state: &GatewayState, server: &TorchServe) -> anyhow::Result<()> {
        let key = if self.is_service() {
            String::new() // a service's gateway has its own key configured
        } else {
            inference_key(server)?
        };
        let config_path = self.spec.config.clone();
        let mut file = ConfigFile::read(&config_path)?;
        let previous_bytes = file.bytes().to_vec();
        let previous = self.state.take();
        self.stop().await;
        if previous_bytes != state.config {
            file.write(&state.config)?;
        }
        match self.start(&state.environment, &key).await {
            Ok(()) => {
                self.state = Some(state.clone());
                Ok(())
            }
            Err(cause) => {
                let mut file = ConfigFile::read(&config_path)?;
                if file.bytes() != previous_bytes.as_slice() {
                    file.write(&previous_bytes)
                        .context("putting the gateway's config back")?;
                }
                let Some(previous) = previous else {
                    return Err(cause.context(format!("{} was put back as it was", config_path.display())));
                };
                match self.start(&previous.environment, &key).await {
                    Ok(()) => {
                        self.state = Some(previous);
                        Err(cause.context(format!(
                            "{} was put back as it was, and the gateway runs on it again",
                            config_path.display()
                        )))
                    }
                    Err(again) => Err(cause.context(format!(
                        "{} was put back, but the gateway did not start on it either: {again:#}",
                        config_path.display()
                    ))),
                }
            }
        }
    }

    /// The study's end: the file says `state`. A managed gateway was
    /// servetune's and stops; a service's runs on `state` (restarted
    /// unless it runs it already).
    pub async fn finish_on(&mut self, state: &GatewayState, server: &TorchServe) -> anyhow::Result<()> {
        if self.is_service() {
            if self.state.as_ref() == Some(state) && self.running.is_some() {
                return Ok(());
            }
            return self.restart_on(state, server).await;
        }
        self.stop().await;
        let mut file = ConfigFile::read(&self.spec.config)?;
        if file.bytes() != state.config.as_slice() {
            file.write(&state.config)?;
        }
        Ok(())
    }

    /// Stops a managed gateway (a service's keeps running).
    pub async fn stop(&mut self) {
        self.state = None;
        if let Some(gateway) = self.running.take() {
            gateway.stop().await;
        }
    }

    async fn start(&mut self, environment: &BTreeMap<String, String>, key: &str) -> anyhow::Result<()> {
        let mut spec = self.spec.clone();
        spec.environment = environment.clone();
        if spec.service.is_none() {
            spec.environment
                .entry(INFERENCE_KEY_VARIABLE.to_string())
                .or_insert_with(|| key.to_string());
        }
        self.running = Some(Gateway::start(&spec).await?);
        Ok(())
    }
}

/// How `apply::converge` moves the study's gateway.
impl FrontGateway for StudyGateway {
    fn state(&self) -> Option<&GatewayState> {
        StudyGateway::state(self)
    }

    fn holds_torchserve_key(&self) -> bool {
        !self.is_service()
    }

    async fn restart_on(&mut self, state: &GatewayState, server: &TorchServe) -> anyhow::Result<()> {
        StudyGateway::restart_on(self, state, server).await
    }

    async fn finish_on(&mut self, state: &GatewayState, server: &TorchServe) -> anyhow::Result<()> {
        StudyGateway::finish_on(self, state, server).await
    }
}
