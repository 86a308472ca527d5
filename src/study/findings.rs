//! What a study found, as a report: every candidate's estimate, the tier
//! decisions among the confirmed ones, and for each tier the files that
//! realise it (config, environment, log4j2 file) with what it runs with
//! (logging, threads per worker); when the confirmation did not complete,
//! what the screening alone suggests, marked not confirmed. The statistics
//! are `estimator`'s and `shortfall`'s; this turns them into the `report`
//! module's types.

use crate::apply::state::Deployment;
use crate::apply::tier::{TierManifest, TierOrigin, TierStates};
use crate::objective::Figures;
use crate::report::{self, Gains, Recommendation, RecommendedFiles, Report};
use crate::server::logging;
use crate::trial::{Candidate, MeasuredCosts, TierDecision, TrialKind};

use super::planner::{Plan, Planner};
use super::runner::{Runner, Subject};
use super::served::Served;
use super::settings::Settings;
use super::study_loop::Finished;
use super::{estimator, shortfall};
use crate::space::Space;
use crate::store::TrialStore;
use crate::trial::{Entry, NotSearched};

/// What a report is made of besides the loop's findings.
pub struct Found<'a> {
    pub settings: &'a Settings,
    pub plan: &'a Plan,
    pub space: &'a Space,
    pub not_searched: &'a [NotSearched],
}

/// A finished study as its report reads it.
struct Study<'a> {
    found: &'a Found<'a>,
    runner: &'a Runner,
    entries: &'a [Entry],
}

/// The report of a finished study.
pub fn report(found: &Found<'_>, finished: &Finished<Served, TrialStore>) -> anyhow::Result<Report> {
    let study = Study {
        found,
        runner: &finished.testbed.runner,
        entries: &finished.entries,
    };
    study.report(finished)
}

impl Study<'_> {
    fn report(&self, finished: &Finished<Served, TrialStore>) -> anyhow::Result<Report> {
        let s = self.found.settings;
        let stop = finished.stop;
        let candidates = &finished.candidates;
        let baseline = candidates.iter().find(|c| c.is_baseline());
        let defaults_point = self.found.space.default_point();
        let defaults = candidates.iter().find(|c| c.point.as_ref() == Some(&defaults_point));
        let reference = estimator::reference_figures(candidates, self.found.space);
        let constraints = finished.constraints;
        let mut recommendations = Vec::new();
        for decision in &finished.decisions {
            recommendations.push(self.recommendation(decision, candidates, baseline, defaults)?);
        }
        let confirmation_runs = self.entries.iter().filter(|e| e.kind == TrialKind::Confirm).count();
        let confirmation_incomplete = finished.confirmation_incomplete.clone();
        let not_confirmed = match &confirmation_incomplete {
            Some(_) => self.screening_suggestion(&constraints, &reference)?,
            None => None,
        };
        let costs = MeasuredCosts::of(self.entries);
        let no_recommendation = recommendations.is_empty().then(|| {
            if candidates.iter().any(|c| c.confirmed) {
                "no confirmed candidate met the constraints".to_string()
            } else {
                "nothing was confirmed (the budget ran out or the study was interrupted before the confirmation rounds)"
                    .to_string()
            }
        });
        let mut report = Report {
            study: s.name.clone(),
            strategy: s.strategy.resolve().label().to_string(),
            stop,
            trials: self.entries.len(),
            screening_trials: self.entries.iter().filter(|e| e.kind == TrialKind::Screen).count(),
            confirmation_runs,
            failed_trials: self.entries.iter().filter(|e| e.failure.is_some()).count(),
            elapsed_s: finished.elapsed.as_secs_f64(),
            budget_s: s.budget.as_secs_f64(),
            slo_p99_ms: constraints.p99_ms,
            slo_from_baseline: s.p99_from_baseline,
            model_limits: s.model_limits.clone(),
            baseline: baseline.map(|c| c.figures),
            defaults: defaults.map(|c| c.figures),
            cost: s
                .cost
                .map(|prices| report::cost_of_tiers(&prices, baseline.map(|c| &c.figures), &recommendations)),
            soak: None,
            recommendations,
            pareto_front: Report::front_of(candidates, |f| constraints.feasible(f)),
            hot_share: costs.hot_share(),
            costs,
            not_searched: self.found.not_searched.to_vec(),
            incidents: self
                .entries
                .iter()
                .flat_map(|e| e.incidents.iter().map(move |i| format!("trial {}: {i}", e.number)))
                .collect(),
            no_recommendation,
            confirmation_incomplete,
            not_confirmed,
            hosts: crate::report::hosts_of(self.entries),
            warm_start: finished.warm_start.clone(),
            candidates: candidates.clone(),
            entries: self.entries.to_vec(),
            config_name: self
                .runner
                .server
                .spec()
                .config
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        if let Some(soak) = finished.soak.clone() {
            report.record_soak(soak);
        }
        Ok(report)
    }

    /// What the screening alone suggests for the balanced tier when the
    /// confirmation did not complete (`shortfall`), with its screening
    /// figures and gains over the baseline's screening.
    fn screening_suggestion(
        &self,
        constraints: &crate::objective::Constraints,
        reference: &Figures,
    ) -> anyhow::Result<Option<Recommendation>> {
        let planner = Planner {
            plan: self.found.plan,
            space: self.found.space,
            entries: self.entries,
            running: None,
            baseline_levels: Vec::new(),
        };
        let screened = planner.screened_candidates();
        let Some(decision) =
            shortfall::best_unconfirmed(&screened, constraints, &self.found.settings.weights, reference)
        else {
            return Ok(None);
        };
        let baseline = screened.iter().find(|c| c.is_baseline());
        let defaults_point = self.found.space.default_point();
        let defaults = screened.iter().find(|c| c.point.as_ref() == Some(&defaults_point));
        self.recommendation(&decision, &screened, baseline, defaults).map(Some)
    }

    fn recommendation(
        &self,
        decision: &TierDecision,
        candidates: &[Candidate],
        baseline: Option<&Candidate>,
        defaults: Option<&Candidate>,
    ) -> anyhow::Result<Recommendation> {
        let chosen = &candidates[decision.chosen];
        let subject = match &chosen.point {
            Some(p) => Subject::Point(p.clone()),
            None => Subject::Baseline,
        };
        let deployment = self
            .runner
            .deployment_of(self.found.space, &subject)
            .map_err(|e| anyhow::anyhow!(e))?;
        let props = deployment.properties().map_err(|e| anyhow::anyhow!(e))?;
        let level = logging::level_of(props.get("vmargs"));
        let log4j = level
            .as_deref()
            .filter(|l| *l != logging::DEFAULT_LEVEL)
            .map(|l| (format!("log4j2-{l}.xml"), logging::render(l)));
        let async_logging = props.get("async_logging").is_some_and(|v| v.trim() == "true");
        let logging_text = format!(
            "{}, async_logging={async_logging}",
            match &level {
                Some(l) => format!("TorchServe log level {l}"),
                None => "the deployment's own log4j2 config".to_string(),
            }
        );
        let threads = match deployment.environment.get("OMP_NUM_THREADS") {
            Some(n) => format!("{n} (OMP_NUM_THREADS={n})"),
            None => match std::env::var("OMP_NUM_THREADS") {
                Ok(n) => format!("{n} (inherited OMP_NUM_THREADS)"),
                Err(_) => format!(
                    "unset: torch's default, one per core ({} here)",
                    crate::space::logical_cpus()
                ),
            },
        };
        let tier_manifest = self.tier_manifest(decision, &deployment)?;
        // Per-model and peak figures come from its latest measured window.
        let latest = self
            .entries
            .iter()
            .rev()
            .find(|e| e.point == chosen.point && e.figures.is_some() && e.server_lost.is_none());
        Ok(Recommendation {
            tier: decision.tier,
            description: if decision.keep_current {
                format!("keep the current config ({})", chosen.description)
            } else {
                chosen.description.clone()
            },
            values: chosen
                .point
                .as_ref()
                .map(|p| {
                    self.found
                        .space
                        .values(p)
                        .into_iter()
                        .map(|(k, v)| (k, v.to_string()))
                        .collect()
                })
                .unwrap_or_default(),
            figures: chosen.figures,
            models: latest.map(|e| e.models.clone()).unwrap_or_default(),
            peak: latest.and_then(|e| e.peak.clone()),
            throughput_ci95: chosen.throughput.map(|i| i.half_width()),
            throughput: chosen.throughput,
            runs: chosen.runs,
            confirmed: chosen.confirmed,
            keep_current: decision.keep_current,
            indistinguishable_from: decision
                .indistinguishable_from
                .iter()
                .map(|&i| candidates[i].description.clone())
                .collect(),
            reason: decision.reason.clone(),
            gain_vs_baseline: baseline.map(|b| Gains::between(&chosen.figures, &b.figures)),
            gain_vs_baseline_ci95: baseline.map(|b| estimator::gains_over(chosen, b)),
            gain_vs_defaults: defaults.map(|d| Gains::between(&chosen.figures, &d.figures)),
            logging: logging_text,
            threads_per_worker: threads,
            environment: deployment.environment.clone(),
            gateway_environment: deployment.gateway.as_ref().map(|g| g.environment.clone()),
            files: RecommendedFiles {
                model_config_yaml: report::model_config_yaml(&deployment.config, &self.found.settings.model),
                model_configs: match self.found.settings.models.as_slice() {
                    [_, _, ..] => self
                        .found
                        .settings
                        .models
                        .iter()
                        .map(|m| (m.clone(), report::model_config_yaml(&deployment.config, m)))
                        .collect(),
                    _ => std::collections::BTreeMap::new(),
                },
                gateway_config: deployment
                    .gateway
                    .map(|g| (self.runner.gateway_config_name(), g.config)),
                config: deployment.config,
                log4j,
                tier_manifest: Some(tier_manifest),
            },
        })
    }

    /// `tier.json` of a tier: what it changes over the original, and where
    /// it was measured.
    fn tier_manifest(&self, decision: &TierDecision, deployment: &Deployment) -> anyhow::Result<String> {
        let original = &self.runner.original;
        let manifest = TierManifest::between(
            &TierOrigin {
                study: &self.found.settings.name,
                tier: decision.tier.label(),
                model: &self.found.settings.model,
                measured_config: &self.runner.server.spec().config,
                gateway: deployment.gateway.is_some(),
            },
            &TierStates {
                original_config: &original.config,
                original_environment: &original.environment,
                tier_config: &deployment.config,
                tier_environment: &deployment.environment,
            },
        )
        .map_err(|e| anyhow::anyhow!("the {} tier's changes: {e}", decision.tier.label()))?;
        Ok(manifest.to_json())
    }
}
