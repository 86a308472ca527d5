//! A study started from the landscape model's prediction (`tune --prior
//! FILE`, FILE being what `predict --json` printed): the model is fitted
//! again on the same landscapes, predicts every point of this study's space
//! that varies the parameters it knows, and `search::Guided` proposes the
//! best expected first, correcting the prediction with each measurement,
//! until it stops paying and the study's own strategy takes over.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

use crate::landscape::ModelFeatures;
use crate::objective::Constraints;
use crate::predict::LandscapeModel;
use crate::search::Guess;
use crate::space::Space;

/// The part of `predict --json` a study reads.
#[derive(Debug, Deserialize)]
struct PriorFile {
    model: String,
    features: ModelFeatures,
    /// The landscapes' folder (absent or null: the bundled ones).
    #[serde(default)]
    landscapes: Option<PathBuf>,
}

/// The landscape model and the features of the model a study tunes.
pub struct Prior {
    pub from: PathBuf,
    model: LandscapeModel,
    features: ModelFeatures,
}

impl Prior {
    /// Reads `path` and fits the model; refuses a prediction for another
    /// model than the study's.
    pub fn load(path: &Path, study_model: &str, models: &[String]) -> anyhow::Result<Self> {
        let refuse = |why: String| anyhow::anyhow!("--prior {}: {why}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| refuse(format!("cannot read: {e}")))?;
        let file: PriorFile = serde_json::from_str(&text)
            .map_err(|e| refuse(format!("not what `servetune predict --json` prints: {e}")))?;
        if models.len() > 1 {
            return Err(refuse(format!(
                "the study tunes {} models; a prediction is of one model",
                models.len()
            )));
        }
        if file.model != study_model {
            return Err(refuse(format!(
                "it predicts model {}, the study tunes {study_model}",
                file.model
            )));
        }
        let priors = match &file.landscapes {
            Some(dir) => crate::predict::load_dir(dir)?,
            None => crate::predict::bundled(),
        };
        let model = crate::predict::fit(&priors).with_context(|| format!("--prior {}", path.display()))?;
        Ok(Self {
            from: path.to_path_buf(),
            model,
            features: file.features,
        })
    }

    /// The prediction of each point of `space` the model can tell apart
    /// (empty, with a note, when the space searches none of its parameters).
    pub fn guesses(&self, space: &Space, constraints: &Constraints) -> Vec<Guess> {
        let guesses = crate::predict::guesses(&self.model, &self.features, space, constraints);
        if guesses.is_empty() {
            tracing::warn!(
                "--prior {}: the space searches none of the parameters the landscape model knows; starting from nothing",
                self.from.display()
            );
        } else {
            tracing::info!(
                "--prior {}: {} configs predicted from {}; the best expected are measured first",
                self.from.display(),
                guesses.len(),
                self.model.models.join(", ")
            );
        }
        guesses
    }
}
