//! Why a deployment's study starts: the triggers the watcher fires, the
//! API queues, and a restarted daemon finds (a study left running). The
//! cycle runner takes them one cycle at a time.

/// Why a study starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    Manual,
    Schedule,
    Drift(String),
    Slo(String),
    ModelVersion(String),
    /// A study a killed daemon left running, by name.
    Resume(String),
}

impl Trigger {
    pub fn describe(&self) -> String {
        match self {
            Trigger::Manual => "manual (API)".into(),
            Trigger::Schedule => "schedule".into(),
            Trigger::Drift(what) => format!("drift: {what}"),
            Trigger::Slo(what) => format!("SLO: {what}"),
            Trigger::ModelVersion(what) => format!("new model version: {what}"),
            Trigger::Resume(name) => format!("resuming {name}"),
        }
    }
}
