//! `servetune predict`: the configs a model is expected to do best with,
//! from the landscapes recorded with other models (`model`), before any
//! search. The new model's cheap features are measured on its server in
//! seconds (`features`); the landscape model then predicts every config of
//! the recorded grid, and each tier's best are ranked (`rank`). A study can
//! start from the same model (`guesses`: its prediction of each point of
//! the study's space, which `search::Guided` corrects with every
//! measurement), and the replay tests it on landscapes it did not learn
//! from.
//!
//! The prior landscapes are the ones bundled with servetune (recorded on
//! the project's 2-core machine, compiled in) unless a folder of one's own
//! is named: a model predicted from another machine type's landscapes is
//! predicted for that machine type.

pub mod accuracy;
pub mod features;
pub mod model;
pub mod rank;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::landscape::{parse_landscape, Landscape, ModelFeatures};
use crate::objective::Constraints;
use crate::search::{Component, Guess, Latency};
use crate::space::{Point, Space};

pub use model::{settings_of_point, users_of, LandscapeModel, Prediction, Settings, ERROR_FREE, KNOWN};
pub use rank::{Forecast, RankedConfig, TierForecast};

/// The landscapes compiled in (recorded on the project's 2-core machine by
/// `benches/record-landscape.sh`): name, CSV. Two loads, each a family the
/// model learns from alone (`at_load`): a closed loop of 16 users (tiny,
/// echo, small, ResNet-50, BERT-base; GPT-2 small keeps few requests in a
/// window at 16) and of 4 users (the same five and GPT-2).
const BUNDLED: &[(&str, &str)] = &[
    ("tiny-cpu.csv", include_str!("../../benches/landscapes/tiny-cpu.csv")),
    ("echo-cpu.csv", include_str!("../../benches/landscapes/echo-cpu.csv")),
    ("small-cpu.csv", include_str!("../../benches/landscapes/small-cpu.csv")),
    (
        "resnet50-cpu.csv",
        include_str!("../../benches/landscapes/resnet50-cpu.csv"),
    ),
    ("bert-cpu.csv", include_str!("../../benches/landscapes/bert-cpu.csv")),
    (
        "tiny-cpu-u4.csv",
        include_str!("../../benches/landscapes/tiny-cpu-u4.csv"),
    ),
    (
        "echo-cpu-u4.csv",
        include_str!("../../benches/landscapes/echo-cpu-u4.csv"),
    ),
    (
        "small-cpu-u4.csv",
        include_str!("../../benches/landscapes/small-cpu-u4.csv"),
    ),
    (
        "resnet50-cpu-u4.csv",
        include_str!("../../benches/landscapes/resnet50-cpu-u4.csv"),
    ),
    (
        "bert-cpu-u4.csv",
        include_str!("../../benches/landscapes/bert-cpu-u4.csv"),
    ),
    ("gpt2-cpu.csv", include_str!("../../benches/landscapes/gpt2-cpu.csv")),
];

/// Prior landscapes with the name each goes by.
pub type Priors = Vec<(String, Landscape)>;

/// Every bundled landscape, at every load (`bundled_at` picks one load).
pub fn bundled() -> Priors {
    BUNDLED
        .iter()
        .map(|(name, csv)| {
            let landscape = parse_landscape(csv, name).expect("a bundled landscape parses");
            (name.to_string(), landscape)
        })
        .collect()
}

/// The bundled landscapes recorded at the load nearest `users` (None: the
/// load most of them share).
pub fn bundled_at(users: Option<u32>) -> Priors {
    at_load(bundled(), users)
}

/// Every landscape with model features in `dir` (`*.csv`) recorded at the
/// load nearest `users` (None: the load most of them share); others are
/// skipped with a note.
pub fn load_dir(dir: &Path, users: Option<u32>) -> anyhow::Result<Priors> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("--landscapes {}: cannot read the folder", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    paths.sort();
    let mut priors = Vec::new();
    for path in paths {
        let landscape = crate::landscape::load_landscape(&path)?;
        if landscape.features.is_none() {
            tracing::info!(
                "{}: no model features in its header; not a prior landscape",
                path.display()
            );
            continue;
        }
        priors.push((path.display().to_string(), landscape));
    }
    anyhow::ensure!(
        !priors.is_empty(),
        "--landscapes {}: no landscape with model features (model=… latency_ms=… worker_mb=… frontend_mb=… in its first line)",
        dir.display()
    );
    Ok(at_load(priors, users))
}

/// The priors recorded at one load (the model learns from one:
/// `model::one_load`): the recorded load nearest `users` (by ratio; the
/// higher on a tie), or with None the load most of them share, noting the
/// others set aside.
fn at_load(priors: Priors, users: Option<u32>) -> Priors {
    let count = |load: u32| priors.iter().filter(|(_, l)| users_of(l) == load).count();
    let distance = |load: u32, asked: u32| (f64::from(load) / f64::from(asked)).ln().abs();
    let loads = priors.iter().map(|(_, l)| users_of(l));
    let load = match users {
        Some(asked) => loads.min_by(|&a, &b| distance(a, asked).total_cmp(&distance(b, asked)).then(b.cmp(&a))),
        None => loads.max_by_key(|&u| (count(u), u)),
    };
    let Some(load) = load else {
        return priors;
    };
    priors
        .into_iter()
        .filter(|(name, l)| {
            let keep = users_of(l) == load;
            if !keep && users.is_none() {
                tracing::warn!(
                    "{name}: recorded with {} users, the other landscapes with {load}: set aside \
                     (the model's latencies are for one load)",
                    users_of(l)
                );
            }
            keep
        })
        .collect()
}

/// Reads the landscapes named one by one (`replay --prior A.csv,B.csv`).
pub fn load_files(paths: &[PathBuf]) -> anyhow::Result<Priors> {
    paths
        .iter()
        .map(|path| Ok((path.display().to_string(), crate::landscape::load_landscape(path)?)))
        .collect()
}

/// Fits the landscape model on `priors`.
pub fn fit(priors: &Priors) -> anyhow::Result<LandscapeModel> {
    let named: Vec<(&str, &Landscape)> = priors.iter().map(|(n, l)| (n.as_str(), l)).collect();
    LandscapeModel::fit(&named).map_err(|e| anyhow::anyhow!(e))
}

/// The most points `guesses` enumerates: every combination of the levels
/// of the parameters the model knows, the others at their defaults.
pub const MOST_GUESSES: usize = 20_000;

/// The model's guess of every point of `space` that varies only the
/// parameters it knows (the rest at their defaults, for the inner strategy
/// to move) within the levels its landscapes recorded (`within_recorded`:
/// beyond them it would only guess), judged by `constraints`. Empty when
/// the space has none of them.
pub fn guesses(
    model: &LandscapeModel,
    features: &ModelFeatures,
    space: &Space,
    constraints: &Constraints,
) -> Vec<Guess> {
    let known: Vec<usize> = (0..space.dimensions())
        .filter(|&i| KNOWN.iter().any(|(k, _)| *k == space.parameters[i].name))
        .collect();
    let count: usize = known.iter().map(|&i| space.parameters[i].levels.len()).product();
    if known.is_empty() || count > MOST_GUESSES {
        return Vec::new();
    }
    let default = space.default_point();
    let mut seen: HashSet<Point> = HashSet::with_capacity(count);
    let mut guesses: Vec<Guess> = Vec::with_capacity(count);
    for index in 0..count {
        let mut point: Point = default.clone();
        let mut rest = index;
        for &i in &known {
            let size = space.parameters[i].levels.len();
            point[i] = rest % size;
            rest /= size;
        }
        let point = space.normalize(&point);
        if !seen.insert(point.clone()) {
            continue;
        }
        let settings = settings_of_point(space, &point);
        if !model.within_recorded(&settings) {
            continue;
        }
        let components: Vec<Component> = model
            .predict_by_landscape(&settings, features)
            .iter()
            .map(|(mass, alone)| Component {
                mass: *mass,
                throughput_rps: alone.figures.throughput_rps,
                chance_feasible: chance_feasible(alone, constraints),
                latency: constraints.p99_ms.is_finite().then(|| Latency {
                    p99_ms: alone.figures.p99_ms,
                    ln_sd: alone.p99_ln_sd,
                    chance_otherwise: chance_otherwise(alone, constraints),
                }),
            })
            .collect();
        // What a study expects of the point: the mixture of what each prior
        // landscape expects, in shares of their masses (what it reweighs as
        // it measures); the model's blend where no landscape is near.
        let total: f64 = components.iter().map(|c| c.mass).sum();
        let (throughput_rps, chance) = if total > 1e-300 {
            let mean = |value: fn(&Component) -> f64| components.iter().map(|c| c.mass * value(c)).sum::<f64>() / total;
            (mean(|c| c.throughput_rps), mean(|c| c.chance_feasible))
        } else {
            let predicted = model.predict(&settings, features);
            (
                predicted.figures.throughput_rps,
                chance_feasible(&predicted, constraints),
            )
        };
        guesses.push(Guess {
            point,
            throughput_rps,
            chance_feasible: chance,
            components,
            slo_p99_ms: constraints.p99_ms.is_finite().then_some(constraints.p99_ms),
        });
    }
    guesses
}

/// The chance a predicted config meets `constraints`: its p99 (normal in
/// `ln`), errors and memory cap (normal in MB).
pub fn chance_feasible(predicted: &Prediction, constraints: &Constraints) -> f64 {
    predicted.chance_p99_within(constraints.p99_ms) * chance_otherwise(predicted, constraints)
}

/// The chance a predicted config meets `constraints` apart from p99: its
/// errors and memory cap.
pub fn chance_otherwise(predicted: &Prediction, constraints: &Constraints) -> f64 {
    // A tolerant error limit (e.g. 50 %) is met by what served without errors too.
    let errors = if constraints.error_rate >= predicted.figures.error_rate.max(ERROR_FREE) {
        1.0
    } else {
        predicted.chance_error_free
    };
    let memory = constraints.memory_mb.map_or(1.0, |cap| {
        let z = (cap - predicted.figures.memory_mb) / predicted.memory_sd_mb.max(1.0);
        crate::stats::normal_cdf(z)
    });
    errors * memory
}

/// What `predict` is asked.
pub struct Ask<'a> {
    pub model: Option<&'a str>,
    pub body: &'a [u8],
    /// The p99 objective (None: `DEFAULT_SLO_MULTIPLE` × the single-request latency).
    pub slo_p99_ms: Option<f64>,
    /// A folder of landscapes (None: the bundled ones).
    pub landscapes: Option<&'a Path>,
    /// The closed-loop users the latencies are predicted for: the landscapes
    /// recorded at the nearest load are learnt from.
    pub users: u32,
}

/// The p99 objective when none is given, as a multiple of the measured
/// single-request latency.
pub const DEFAULT_SLO_MULTIPLE: f64 = 5.0;

/// A served model as `predict` measured it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Measured {
    pub model: String,
    pub features: ModelFeatures,
    /// The settings it is served with now.
    pub current: Settings,
}

/// Measures the model's features on `server` (starting it when it does not
/// run, and stopping it after).
pub async fn measure(server: &crate::server::TorchServe, ask: &Ask<'_>) -> anyhow::Result<Measured> {
    let started = server
        .start_unless_ready()
        .await
        .context("starting the target's TorchServe")?;
    let measured = async {
        let api = server.api()?;
        let model = match ask.model {
            Some(m) => m.to_string(),
            None => api
                .list_models()
                .await?
                .into_iter()
                .next()
                .context("the target serves no model")?,
        };
        let features = features::measure(server, &model, ask.body).await?;
        let current = current_settings(server, &api, &model).await?;
        Ok::<_, anyhow::Error>(Measured {
            model,
            features,
            current,
        })
    }
    .await;
    server.stop_if_started(started).await;
    measured
}

/// Forecasts the best configs of the `measured` model from the prior landscapes.
pub fn forecast(measured: &Measured, ask: &Ask<'_>) -> anyhow::Result<Forecast> {
    let priors = match ask.landscapes {
        Some(dir) => load_dir(dir, Some(ask.users))?,
        None => bundled_at(Some(ask.users)),
    };
    let model = fit(&priors)?;
    if model.users != ask.users {
        tracing::warn!(
            "no landscape was recorded at {} users: the nearest load, {} users, is learnt from \
             and its latencies are for that load",
            ask.users,
            model.users
        );
    }
    let features = measured.features;
    let slo_p99_ms = ask.slo_p99_ms.unwrap_or(DEFAULT_SLO_MULTIPLE * features.latency_ms);
    let grid = rank::grid(&priors);
    let (current, tiers) = rank::rank(&model, &features, &grid, &measured.current, slo_p99_ms);
    Ok(Forecast {
        model: measured.model.clone(),
        features,
        learnt_from: model.models.clone(),
        users: model.users,
        landscapes: ask.landscapes.map(Path::to_path_buf),
        slo_p99_ms,
        current,
        tiers,
        configs: grid.len(),
    })
}

/// The settings the model is served with now: batch size, delay and
/// workers as TorchServe reports them, netty threads from the config file
/// (TorchServe's default, one per core, when it does not set them).
async fn current_settings(
    server: &crate::server::TorchServe,
    api: &crate::server::TorchServeApi,
    model: &str,
) -> anyhow::Result<Settings> {
    let status = api.describe_model(model).await?;
    let (_, properties) = crate::config::read_properties(&server.spec().config)?;
    let netty = properties
        .get("number_of_netty_threads")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(crate::machine::logical_cpus() as f64);
    Ok(Settings::from([
        ("batch_size".to_string(), f64::from(status.batch_size)),
        ("max_batch_delay".to_string(), f64::from(status.max_batch_delay)),
        ("workers".to_string(), f64::from(status.min_workers.max(1))),
        ("number_of_netty_threads".to_string(), netty),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::parse_space;

    #[test]
    fn every_bundled_landscape_names_its_model_and_features() {
        assert!(bundled().iter().all(|(_, l)| l.features.is_some()));
        let models_at = |users: Option<u32>| {
            let priors = bundled_at(users);
            let mut models: Vec<_> = priors.iter().map(|(_, l)| l.model.clone().unwrap()).collect();
            models.sort();
            (models, fit(&priors).unwrap().users)
        };
        let five = ["bert", "echo", "resnet50", "small", "tiny"];
        assert_eq!(models_at(Some(16)), (five.map(String::from).to_vec(), 16));
        assert_eq!(
            models_at(Some(64)),
            (five.map(String::from).to_vec(), 16),
            "the nearest load"
        );
        assert_eq!(
            models_at(Some(8)),
            (five.map(String::from).to_vec(), 16),
            "a tie: the higher"
        );
        let six = ["bert", "echo", "gpt2", "resnet50", "small", "tiny"];
        assert_eq!(models_at(Some(4)), (six.map(String::from).to_vec(), 4));
        assert_eq!(models_at(Some(1)), (six.map(String::from).to_vec(), 4));
    }

    #[test]
    fn a_forecast_for_four_users_learns_from_the_landscapes_recorded_at_four() {
        let measured = Measured {
            model: "new".into(),
            features: ModelFeatures {
                latency_ms: 50.0,
                worker_mb: 400.0,
                frontend_mb: 230.0,
            },
            current: Settings::from([("batch_size".to_string(), 1.0), ("workers".to_string(), 1.0)]),
        };
        let ask = |users: u32| Ask {
            model: None,
            body: b"",
            slo_p99_ms: Some(500.0),
            landscapes: None,
            users,
        };
        let at_four = forecast(&measured, &ask(4)).unwrap();
        assert_eq!(at_four.users, 4);
        assert!(
            at_four.learnt_from.iter().any(|m| m == "gpt2"),
            "{:?}",
            at_four.learnt_from
        );
        let at_sixteen = forecast(&measured, &ask(16)).unwrap();
        assert_eq!(at_sixteen.users, 16);
        assert!(!at_sixteen.learnt_from.iter().any(|m| m == "gpt2"));
        let p99 = |f: &Forecast| f.current.predicted.figures.p99_ms;
        assert!(
            p99(&at_four) < p99(&at_sixteen),
            "a quarter of the users wait less: {} against {} ms",
            p99(&at_four),
            p99(&at_sixteen)
        );
    }

    #[test]
    fn a_folder_learns_from_the_load_most_of_its_landscapes_share() {
        let dir = tempfile::tempdir().unwrap();
        let csv = |users: u32, model: &str| {
            format!(
                "# servetune-landscape users={users} model={model} latency_ms=10 worker_mb=100 frontend_mb=200\n\
                 batch_size,throughput_rps,p50_ms,p99_ms,error_rate,memory_mb\n1,100,10,20,0,300\n"
            )
        };
        std::fs::write(dir.path().join("a.csv"), csv(16, "a")).unwrap();
        std::fs::write(dir.path().join("b.csv"), csv(16, "b")).unwrap();
        std::fs::write(dir.path().join("c.csv"), csv(4, "c")).unwrap();
        let priors = load_dir(dir.path(), None).unwrap();
        let models: Vec<_> = priors.iter().map(|(_, l)| l.model.clone().unwrap()).collect();
        assert_eq!(models, ["a", "b"], "c, at 4 users, is set aside");
        assert_eq!(fit(&priors).unwrap().users, 16);
        let priors = load_dir(dir.path(), Some(3)).unwrap();
        let models: Vec<_> = priors.iter().map(|(_, l)| l.model.clone().unwrap()).collect();
        assert_eq!(models, ["c"], "asked for 3 users, the nearest load is 4");
    }

    #[test]
    fn guesses_vary_the_known_parameters_and_leave_the_rest_at_their_defaults() {
        let landscape = parse_landscape(
            "# servetune-landscape model=a latency_ms=10 worker_mb=100 frontend_mb=200\n\
             batch_size,workers,throughput_rps,p50_ms,p99_ms,error_rate,memory_mb\n\
             1,1,100,10,20,0,300\n4,1,300,12,30,0,320\n1,2,180,10,25,0,400\n4,2,500,14,60,0,420\n",
            "a.csv",
        )
        .unwrap();
        let model = fit(&vec![("a.csv".to_string(), landscape)]).unwrap();
        let space = parse_space(
            "[[parameter]]\nname = \"batch_size\"\nkind = \"pow2\"\nmin = 1\nmax = 4\ndefault = 1\n\
             target = \"models.{model}.batchSize\"\napply = \"hot\"\n\
             [[parameter]]\nname = \"async_logging\"\nkind = \"bool\"\ndefault = false\n\
             target = \"async_logging\"\napply = \"cold\"\n\
             [[parameter]]\nname = \"workers\"\nkind = \"int\"\nmin = 1\nmax = 2\ndefault = 1\n\
             target = [\"models.{model}.minWorkers\", \"models.{model}.maxWorkers\"]\napply = \"hot\"\n",
            "space.toml",
        )
        .unwrap();
        let features = ModelFeatures {
            latency_ms: 10.0,
            worker_mb: 100.0,
            frontend_mb: 200.0,
        };
        let constraints = crate::landscape::throughput_under_slo(40.0, 0.01);
        let guesses = guesses(&model, &features, &space, &constraints);
        assert_eq!(guesses.len(), 3 * 2, "batch 1, 2, 4 × workers 1, 2");
        assert!(guesses.iter().all(|g| g.point[1] == space.default_point()[1]));
        let best = guesses
            .iter()
            .max_by(|a, b| a.throughput_rps.total_cmp(&b.throughput_rps))
            .unwrap();
        assert_eq!(
            space.describe(&best.point),
            "batch_size=4 async_logging=false workers=2"
        );
        let slow = guesses.iter().find(|g| g.point == vec![0, 0, 0]).unwrap();
        assert!(
            slow.chance_feasible > best.chance_feasible,
            "p99 60 ms against 20 ms, SLO 40 ms"
        );
    }
}
