//! A study started from the landscape model's prediction (`tune --prior
//! FILE`, FILE being what `predict --json` printed): the model is fitted
//! again on the same landscapes, predicts every point of this study's space
//! that varies the parameters it knows, and `search::Guided` proposes the
//! best expected first, correcting the prediction with each measurement
//! (weighing again which prior landscapes the measurements agree with),
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
    /// The load the prediction was made for (absent: the landscapes' own).
    #[serde(default)]
    users: Option<u32>,
}

/// The landscape model and the features of the model a study tunes.
pub struct Prior {
    pub from: PathBuf,
    model: LandscapeModel,
    features: ModelFeatures,
}

impl Prior {
    /// Reads `path` and fits the model; refuses a prediction for another
    /// model than the study's, and notes a study load other than the
    /// landscapes' (`study_users`: its closed loop's users, None for an
    /// open loop).
    pub fn load(path: &Path, study_model: &str, models: &[String], study_users: Option<u32>) -> anyhow::Result<Self> {
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
        // The landscapes recorded nearest the study's load; an open loop
        // keeps the load the prediction was made for.
        let load = study_users.or(file.users);
        let priors = match &file.landscapes {
            Some(dir) => crate::predict::load_dir(dir, load)?,
            // (The bundled families differ in size: without a load, the
            // 16 users `predict` defaults to, not the larger family.)
            None => crate::predict::bundled_at(Some(load.unwrap_or(crate::predict::model::RECORDING_USERS))),
        };
        let model = crate::predict::fit(&priors).with_context(|| format!("--prior {}", path.display()))?;
        if let Some(note) = other_load(model.users, study_users) {
            tracing::warn!("--prior {}: {note}", path.display());
        }
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

/// What to say when the study's load is not the one the landscapes were
/// recorded at: the model's latencies are then on another scale (its
/// ranking by throughput still holds; the study's measurements correct the
/// rest).
fn other_load(model_users: u32, study_users: Option<u32>) -> Option<String> {
    let expects = format!(
        "the landscape model's latencies are for a closed loop of {model_users} users, \
         so the p99 it expects is on another scale; the study corrects it with each measurement"
    );
    match study_users {
        Some(users) if users == model_users => None,
        Some(users) => Some(format!("the study's load is {users} users; {expects}")),
        None => Some(format!("the study's load is not a closed loop; {expects}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_study_at_another_load_than_the_landscapes_is_told_so() {
        assert_eq!(other_load(16, Some(16)), None);
        let note = other_load(16, Some(4)).unwrap();
        assert!(
            note.starts_with("the study's load is 4 users") && note.contains("16 users"),
            "{note}"
        );
        assert!(other_load(16, None).unwrap().contains("not a closed loop"));
    }
}
