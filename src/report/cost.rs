//! What a config costs to run: the study file's `[cost]` prices, and the
//! cost per million requests of the baseline and each tier at its measured
//! throughput and memory, with the `lowest-cost` tier.
//!
//! Two ways to price a host:
//! - `core_hour` (and/or `gb_hour`): an hour costs `core_hour × cores +
//!   gb_hour × memory GB`, where `cores` is the `[cost]` table's or this
//!   machine's logical CPUs (the server had them all) and memory is the
//!   config's measured PSS;
//! - `instance_hour`, with the instance's `cores`: an hour costs
//!   `instance_hour`, and the instance serves the throughput measured here
//!   scaled by its cores over this machine's (CPU-bound serving; without
//!   `cores` the instance is this machine).
//!
//! Then cost per million requests = cost per hour / (requests/s × 3600) ×
//! 10⁶. Pure functions; the study fills `Report::cost` with `tiers_cost`.

use serde::{Deserialize, Serialize};

use crate::objective::Figures;

/// A price or count: a finite number ≥ 0 (the study file's line is named
/// when it is not).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct NonNegative(f64);

impl TryFrom<f64> for NonNegative {
    type Error = String;

    fn try_from(value: f64) -> Result<Self, String> {
        if value.is_finite() && value >= 0.0 {
            Ok(Self(value))
        } else {
            Err(format!("{value} is not a price: give a finite number ≥ 0"))
        }
    }
}

impl From<NonNegative> for f64 {
    fn from(value: NonNegative) -> f64 {
        value.0
    }
}

/// `[cost]` as written.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricesFile {
    core_hour: Option<NonNegative>,
    gb_hour: Option<NonNegative>,
    instance_hour: Option<NonNegative>,
    cores: Option<NonNegative>,
}

/// The prices of a host, checked: either per core and GB, or per instance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "PricesFile")]
pub struct Prices {
    pub core_hour: f64,
    pub gb_hour: f64,
    /// An instance's price per hour (then `core_hour` and `gb_hour` are 0).
    pub instance_hour: Option<f64>,
    /// Cores billed (`core_hour`) or the instance's cores; None: this machine's.
    pub cores: Option<f64>,
}

impl TryFrom<PricesFile> for Prices {
    type Error = String;

    fn try_from(f: PricesFile) -> Result<Self, String> {
        let value = |v: Option<NonNegative>| v.map(f64::from);
        let (core_hour, gb_hour, instance_hour) = (value(f.core_hour), value(f.gb_hour), value(f.instance_hour));
        let cores = value(f.cores);
        if cores == Some(0.0) {
            return Err("cores must be above 0".into());
        }
        match (instance_hour, core_hour.or(gb_hour)) {
            (Some(_), Some(_)) => {
                Err("give instance_hour (with the instance's cores) or core_hour/gb_hour, not both".into())
            }
            (None, None) => Err("give core_hour and/or gb_hour, or instance_hour with cores".into()),
            _ => Ok(Self {
                core_hour: core_hour.unwrap_or(0.0),
                gb_hour: gb_hour.unwrap_or(0.0),
                instance_hour,
                cores,
            }),
        }
    }
}

/// What one config costs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostRow {
    /// `baseline` or a tier's label.
    pub config: String,
    pub description: String,
    pub throughput_rps: f64,
    pub memory_mb: f64,
    pub cost_per_hour: f64,
    /// None when the config served nothing.
    pub cost_per_million_requests: Option<f64>,
}

/// The cost of the baseline and every tier, and the cheapest tier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostReport {
    pub prices: Prices,
    /// Logical CPUs of the machine the study measured on.
    pub machine_cores: f64,
    /// How an hour was priced, in words.
    pub basis: String,
    pub baseline: Option<CostRow>,
    pub tiers: Vec<CostRow>,
    /// The label of the tier with the lowest cost per million requests.
    pub lowest_cost: Option<String>,
}

/// What an hour of a config using `memory_mb` costs.
pub fn cost_per_hour(prices: &Prices, machine_cores: f64, memory_mb: f64) -> f64 {
    match prices.instance_hour {
        Some(hour) => hour,
        None => {
            let cores = prices.cores.unwrap_or(machine_cores);
            prices.core_hour * cores + prices.gb_hour * memory_mb.max(0.0) / 1024.0
        }
    }
}

/// Requests per second the priced host serves for `figures` measured here.
pub fn priced_throughput(prices: &Prices, machine_cores: f64, figures: &Figures) -> f64 {
    match (prices.instance_hour, prices.cores) {
        (Some(_), Some(cores)) if machine_cores > 0.0 => figures.throughput_rps * cores / machine_cores,
        _ => figures.throughput_rps,
    }
}

/// Cost per million requests of a config (None when it served nothing).
pub fn cost_per_million(prices: &Prices, machine_cores: f64, figures: &Figures) -> Option<f64> {
    let rps = priced_throughput(prices, machine_cores, figures);
    (rps.is_finite() && rps > 0.0)
        .then(|| cost_per_hour(prices, machine_cores, figures.memory_mb) / (rps * 3600.0) * 1e6)
        .filter(|cost| cost.is_finite())
}

fn basis(prices: &Prices, machine_cores: f64) -> String {
    match (prices.instance_hour, prices.cores) {
        (Some(hour), Some(cores)) => format!(
            "an instance at {hour} per hour with {cores} cores; throughput measured on {machine_cores} cores scaled by \
             {cores}/{machine_cores}"
        ),
        (Some(hour), None) => format!("an instance at {hour} per hour (this machine, {machine_cores} cores)"),
        (None, cores) => format!(
            "{} per core-hour × {} cores + {} per GB-hour × the config's memory (PSS)",
            prices.core_hour,
            cores.unwrap_or(machine_cores),
            prices.gb_hour
        ),
    }
}

fn row(prices: &Prices, machine_cores: f64, config: &str, description: &str, figures: &Figures) -> CostRow {
    CostRow {
        config: config.to_string(),
        description: description.to_string(),
        throughput_rps: figures.throughput_rps,
        memory_mb: figures.memory_mb,
        cost_per_hour: cost_per_hour(prices, machine_cores, figures.memory_mb),
        cost_per_million_requests: cost_per_million(prices, machine_cores, figures),
    }
}

/// A tier to price: its label, its config in words, its figures.
pub struct Priced<'a> {
    pub label: &'a str,
    pub description: &'a str,
    pub figures: &'a Figures,
}

/// The cost of the baseline and of each tier, and the cheapest tier.
pub fn tiers_cost(prices: &Prices, machine_cores: f64, baseline: Option<&Figures>, tiers: &[Priced<'_>]) -> CostReport {
    let tiers: Vec<CostRow> = tiers
        .iter()
        .map(|t| row(prices, machine_cores, t.label, t.description, t.figures))
        .collect();
    let lowest_cost = tiers
        .iter()
        .filter_map(|r| r.cost_per_million_requests.map(|cost| (cost, &r.config)))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, config)| config.clone());
    CostReport {
        prices: *prices,
        machine_cores,
        basis: basis(prices, machine_cores),
        baseline: baseline.map(|b| row(prices, machine_cores, "baseline", "the config before the study", b)),
        tiers,
        lowest_cost,
    }
}

/// The `## Cost` section of the summary.
pub fn cost_markdown(cost: &CostReport) -> String {
    let mut md = format!(
        "\n## Cost\n\nPriced as {}. Cost per million requests = cost per hour / (throughput × 3600) × 10⁶.\n\n\
         | config | throughput req/s | memory MB | cost per hour | cost per million requests |\n|---|---|---|---|---|\n",
        cost.basis
    );
    for r in cost.baseline.iter().chain(&cost.tiers) {
        md.push_str(&format!(
            "| {}{} | {:.1} | {:.0} | {:.4} | {} |\n",
            r.config,
            if cost.lowest_cost.as_deref() == Some(r.config.as_str()) {
                " (**lowest-cost**)"
            } else {
                ""
            },
            r.throughput_rps,
            r.memory_mb,
            r.cost_per_hour,
            r.cost_per_million_requests
                .map_or("n/a (served nothing)".into(), |c| format!("{c:.4}"))
        ));
    }
    if let Some(tier) = &cost.lowest_cost {
        md.push_str(&format!("\nlowest-cost: **{tier}**.\n"));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(throughput_rps: f64, memory_mb: f64) -> Figures {
        Figures {
            throughput_rps,
            p50_ms: 5.0,
            p99_ms: 10.0,
            error_rate: 0.0,
            memory_mb,
            model_excess: 0.0,
        }
    }

    fn prices(text: &str) -> Result<Prices, String> {
        #[derive(Deserialize)]
        struct Study {
            cost: Prices,
        }
        toml::from_str::<Study>(text).map(|s| s.cost).map_err(|e| e.to_string())
    }

    #[test]
    fn core_and_gb_hours_price_cores_and_memory() {
        let p = prices("[cost]\ncore_hour = 0.05\ngb_hour = 0.01\n").unwrap();
        // 2 cores × 0.05 + 2 GB × 0.01 = 0.12 per hour.
        assert!((cost_per_hour(&p, 2.0, 2048.0) - 0.12).abs() < 1e-12);
        // 100 req/s = 360 000 requests per hour: 0.12 / 0.36 M.
        let per_million = cost_per_million(&p, 2.0, &figures(100.0, 2048.0)).unwrap();
        assert!((per_million - 0.12 / 0.36).abs() < 1e-9, "{per_million}");
        let billed = prices("[cost]\ncore_hour = 0.05\ncores = 8\n").unwrap();
        assert!(
            (cost_per_hour(&billed, 2.0, 999.0) - 0.4).abs() < 1e-12,
            "cores given win"
        );
    }

    #[test]
    fn an_instance_scales_throughput_by_its_cores() {
        let p = prices("[cost]\ninstance_hour = 0.36\ncores = 4\n").unwrap();
        // Measured 50 req/s on 2 cores: the 4-core instance serves 100 req/s.
        let per_million = cost_per_million(&p, 2.0, &figures(50.0, 1e6)).unwrap();
        assert!((per_million - 1.0).abs() < 1e-9, "{per_million}");
        let here = prices("[cost]\ninstance_hour = 0.36\n").unwrap();
        assert!((cost_per_million(&here, 2.0, &figures(50.0, 10.0)).unwrap() - 2.0).abs() < 1e-9);
        assert_eq!(
            cost_per_million(&here, 2.0, &figures(0.0, 10.0)),
            None,
            "served nothing"
        );
        assert_eq!(cost_per_million(&here, 2.0, &figures(f64::NAN, 10.0)), None);
    }

    #[test]
    fn the_lowest_cost_tier_is_the_cheapest_per_request() {
        use crate::objective::Tier;
        let p = prices("[cost]\ncore_hour = 0.1\ngb_hour = 0.5\n").unwrap();
        let all = [
            (Tier::Balanced, figures(300.0, 2000.0)),
            (Tier::MaxThroughput, figures(320.0, 8000.0)),
            (Tier::LowestMemory, figures(100.0, 500.0)),
        ];
        let tiers: Vec<Priced> = all
            .iter()
            .map(|(tier, figures)| Priced {
                label: tier.label(),
                description: "a config",
                figures,
            })
            .collect();
        let cost = tiers_cost(&p, 2.0, Some(&figures(100.0, 1000.0)), &tiers);
        let per_million = |i: usize| cost.tiers[i].cost_per_million_requests.unwrap();
        assert!(per_million(0) < per_million(1) && per_million(0) < per_million(2));
        assert_eq!(cost.lowest_cost.as_deref(), Some("balanced"));
        assert_eq!(cost.baseline.as_ref().unwrap().config, "baseline");
        let md = cost_markdown(&cost);
        assert!(
            md.contains("balanced (**lowest-cost**)") && md.contains("## Cost"),
            "{md}"
        );
        assert!(tiers_cost(&p, 2.0, None, &[]).lowest_cost.is_none());
    }

    #[test]
    fn bad_prices_are_refused_with_their_line() {
        let negative = prices("[cost]\n\ncore_hour = -1\n").unwrap_err();
        assert!(
            negative.contains("line 3") && negative.contains("not a price"),
            "{negative}"
        );
        let both = prices("[cost]\ncore_hour = 1\ninstance_hour = 2\n").unwrap_err();
        assert!(both.contains("not both") && both.contains("line 1"), "{both}");
        assert!(prices("[cost]\n").unwrap_err().contains("give core_hour"));
        assert!(prices("[cost]\ninstance_hour = 1\ncores = 0\n")
            .unwrap_err()
            .contains("cores"));
        assert!(prices("[cost]\ncore_hour = 1\ncpus = 2\n")
            .unwrap_err()
            .contains("unknown field"));
    }
}
