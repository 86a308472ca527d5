//! Judging trials: constraints (p99 ≤ SLO, error rate ≤ limit, memory ≤ cap,
//! throughput ≥ floor), the loss strategies minimise, the weighted balanced
//! score, the Pareto front over throughput, p99 and memory, and the
//! recommendation tiers. Pure functions over trial summaries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The loss of a trial whose server failed (did not start, crashed): worse
/// than any measured trial, infeasible ones included.
pub const FAILED_LOSS: f64 = 1e9;

/// The figures of a trial the objective looks at.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub throughput_rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub error_rate: f64,
    /// Mean PSS of the server's process tree (0 when unknown).
    pub memory_mb: f64,
    /// In a study of several models: how far the worst model is outside
    /// its own limits (`ModelLimits::excess`, summed ratios); 0 when every
    /// model meets them, or has none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub model_excess: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// One model's own limits in a study of several (`[constraints.<model>]`).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ModelLimit {
    pub p99_ms: Option<f64>,
    pub error_rate: Option<f64>,
}

/// Each model's own limits, judged on its own figures.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ModelLimits(pub BTreeMap<String, ModelLimit>);

impl ModelLimits {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The limits in words (`bert p99 ≤ 300 ms, errors ≤ 1%`), for reports.
    pub fn describe(&self) -> String {
        let one = |(model, limit): (&String, &ModelLimit)| {
            let mut parts = Vec::new();
            if let Some(p99) = limit.p99_ms {
                parts.push(format!("{model} p99 ≤ {p99:.1} ms"));
            }
            if let Some(errors) = limit.error_rate {
                parts.push(format!("{model} errors ≤ {:.2}%", errors * 100.0));
            }
            parts.join(", ")
        };
        self.0
            .iter()
            .map(one)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Summed ratios by which the models' figures — `(p99_ms, error_rate)`
    /// of a model, by name — exceed their limits (0: all within). A model
    /// with limits but no figures (none of its requests measured) is as far
    /// outside as a p99 twice its limit.
    pub fn excess(&self, figures: impl Fn(&str) -> Option<(f64, f64)>) -> f64 {
        let over = |value: f64, limit: f64| {
            if value > limit {
                value / limit.max(1e-9) - 1.0
            } else {
                0.0
            }
        };
        self.0
            .iter()
            .map(|(model, limit)| match figures(model) {
                Some((p99_ms, error_rate)) => {
                    limit.p99_ms.map_or(0.0, |p99| over(p99_ms, p99))
                        + limit.error_rate.map_or(0.0, |e| 100.0 * (error_rate - e).max(0.0))
                }
                None => 1.0,
            })
            .sum()
    }
}

/// Limits a recommendation must respect.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Constraints {
    pub p99_ms: f64,
    pub error_rate: f64,
    pub memory_mb: Option<f64>,
    pub throughput_rps: Option<f64>,
}

/// Weights of the balanced score (log-ratios against the baseline).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    pub throughput: f64,
    pub p99: f64,
    pub memory: f64,
}

impl Constraints {
    pub fn feasible(&self, f: &Figures) -> bool {
        f.p99_ms <= self.p99_ms
            && f.model_excess <= 0.0
            && f.error_rate <= self.error_rate
            && self.memory_mb.is_none_or(|cap| f.memory_mb <= cap)
            && self.throughput_rps.is_none_or(|floor| f.throughput_rps >= floor)
    }

    /// How far outside the limits (0 when feasible), as summed ratios.
    pub fn violation(&self, f: &Figures) -> f64 {
        let over = |value: f64, limit: f64| {
            if value > limit {
                value / limit.max(1e-9) - 1.0
            } else {
                0.0
            }
        };
        over(f.p99_ms, self.p99_ms)
            + f.model_excess
            + 100.0 * (f.error_rate - self.error_rate).max(0.0)
            + self.memory_mb.map_or(0.0, |cap| over(f.memory_mb, cap))
            + self
                .throughput_rps
                .map_or(0.0, |floor| over(floor, f.throughput_rps.max(1e-9)))
    }

    /// The loss strategies minimise: −throughput when feasible, else 1 + the
    /// violation (so infeasible trials rank below all feasible ones, and
    /// nearer misses above farther ones).
    pub fn loss(&self, f: &Figures) -> f64 {
        if self.feasible(f) {
            -f.throughput_rps
        } else {
            (1.0 + self.violation(f)).min(FAILED_LOSS / 2.0)
        }
    }
}

impl Weights {
    /// Balanced score against a reference: higher is better.
    pub fn score(&self, f: &Figures, reference: &Figures) -> f64 {
        let ratio = |a: f64, b: f64| {
            if a > 0.0 && b > 0.0 {
                (a / b).ln()
            } else {
                0.0
            }
        };
        self.throughput * ratio(f.throughput_rps, reference.throughput_rps)
            - self.p99 * ratio(f.p99_ms, reference.p99_ms)
            - self.memory * ratio(f.memory_mb, reference.memory_mb)
    }
}

/// Indices of the points no other point beats on all of throughput (higher),
/// p99 (lower) and memory (lower), with at least one strictly.
pub fn pareto_front(figures: &[Figures]) -> Vec<usize> {
    let dominates = |a: &Figures, b: &Figures| {
        let no_worse = a.throughput_rps >= b.throughput_rps && a.p99_ms <= b.p99_ms && a.memory_mb <= b.memory_mb;
        let better = a.throughput_rps > b.throughput_rps || a.p99_ms < b.p99_ms || a.memory_mb < b.memory_mb;
        no_worse && better
    };
    (0..figures.len())
        .filter(|&i| !figures.iter().any(|other| dominates(other, &figures[i])))
        .collect()
}

/// The recommendation tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Balanced,
    MaxThroughput,
    LowestLatency,
    LowestMemory,
}

impl Tier {
    pub const ALL: [Tier; 4] = [
        Tier::Balanced,
        Tier::MaxThroughput,
        Tier::LowestLatency,
        Tier::LowestMemory,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Tier::Balanced => "balanced",
            Tier::MaxThroughput => "max-throughput",
            Tier::LowestLatency => "lowest-latency",
            Tier::LowestMemory => "lowest-memory",
        }
    }
}

/// For each tier, the index of the chosen candidate among the feasible ones
/// (None when nothing is feasible).
pub fn choose_tiers(
    figures: &[Figures],
    constraints: &Constraints,
    weights: &Weights,
    reference: &Figures,
) -> Vec<(Tier, Option<usize>)> {
    let feasible: Vec<usize> = (0..figures.len())
        .filter(|&i| constraints.feasible(&figures[i]))
        .collect();
    let pick = |key: &dyn Fn(&Figures) -> f64| {
        feasible
            .iter()
            .copied()
            .max_by(|&a, &b| key(&figures[a]).total_cmp(&key(&figures[b])))
    };
    Tier::ALL
        .iter()
        .map(|&tier| {
            let chosen = match tier {
                Tier::Balanced => pick(&|f| weights.score(f, reference)),
                Tier::MaxThroughput => pick(&|f| f.throughput_rps),
                Tier::LowestLatency => pick(&|f| -f.p99_ms),
                Tier::LowestMemory => pick(&|f| -f.memory_mb - 1e-6 * f.p99_ms),
            };
            (tier, chosen)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(t: f64, p99: f64, mem: f64) -> Figures {
        Figures {
            throughput_rps: t,
            p50_ms: p99 / 2.0,
            p99_ms: p99,
            error_rate: 0.0,
            memory_mb: mem,
            model_excess: 0.0,
        }
    }

    const LIMITS: Constraints = Constraints {
        p99_ms: 50.0,
        error_rate: 0.01,
        memory_mb: None,
        throughput_rps: None,
    };

    #[test]
    fn loss_ranks_feasible_before_infeasible() {
        assert_eq!(LIMITS.loss(&f(500.0, 40.0, 1.0)), -500.0);
        let near = LIMITS.loss(&f(900.0, 60.0, 1.0));
        let far = LIMITS.loss(&f(900.0, 200.0, 1.0));
        assert!(near > 0.0 && far > near);
        let erroring = Figures {
            error_rate: 0.5,
            ..f(900.0, 10.0, 1.0)
        };
        assert!(!LIMITS.feasible(&erroring) && LIMITS.loss(&erroring) > near);
        let capped = Constraints {
            memory_mb: Some(100.0),
            ..LIMITS
        };
        assert!(!capped.feasible(&f(500.0, 40.0, 200.0)));
    }

    #[test]
    fn pareto_front_and_tiers() {
        let all = [
            f(100.0, 10.0, 500.0),
            f(200.0, 20.0, 600.0),
            f(150.0, 30.0, 700.0),
            f(250.0, 80.0, 400.0),
            f(90.0, 15.0, 300.0),
        ];
        assert_eq!(pareto_front(&all), vec![0, 1, 3, 4]);
        let weights = Weights {
            throughput: 1.0,
            p99: 1.5,
            memory: 0.0,
        };
        let tiers = choose_tiers(&all, &LIMITS, &weights, &all[0]);
        assert_eq!(
            tiers[0],
            (Tier::Balanced, Some(0)),
            "doubling p99 for double throughput loses at p99 weight 1.5"
        );
        assert_eq!(tiers[1], (Tier::MaxThroughput, Some(1)), "250 req/s breaks the SLO");
        assert_eq!(tiers[2], (Tier::LowestLatency, Some(0)));
        assert_eq!(tiers[3], (Tier::LowestMemory, Some(4)));
        let none = choose_tiers(&[f(1.0, 99.0, 1.0)], &LIMITS, &weights, &all[0]);
        assert!(none.iter().all(|(_, c)| c.is_none()));
    }

    #[test]
    fn each_model_is_judged_on_its_own_figures() {
        let limits = ModelLimits(BTreeMap::from([
            (
                "bert".to_string(),
                ModelLimit {
                    p99_ms: Some(300.0),
                    error_rate: None,
                },
            ),
            (
                "resnet".to_string(),
                ModelLimit {
                    p99_ms: None,
                    error_rate: Some(0.01),
                },
            ),
        ]));
        let within = |m: &str| Some(if m == "bert" { (250.0, 0.5) } else { (900.0, 0.0) });
        assert_eq!(
            limits.excess(within),
            0.0,
            "bert's errors and resnet's p99 are not limited"
        );
        let slow_bert = |m: &str| Some(if m == "bert" { (600.0, 0.0) } else { (1.0, 0.0) });
        assert!((limits.excess(slow_bert) - 1.0).abs() < 1e-9);
        assert_eq!(limits.excess(|_| None), 2.0, "unmeasured models are outside");
        let mut figures = f(100.0, 10.0, 1.0);
        assert!(LIMITS.feasible(&figures));
        figures.model_excess = limits.excess(slow_bert);
        assert!(
            !LIMITS.feasible(&figures),
            "a model outside its SLO makes the server's figures infeasible"
        );
        assert!(LIMITS.loss(&figures) > 0.0);
    }
}
