//! How well the landscape model predicted a landscape it did not learn
//! from: the yardstick its bandwidths are chosen by, apart from the search
//! replay that tests them (`replay --prior` reports both).

use serde::Serialize;

use super::model::{settings_of_point, LandscapeModel};
use crate::landscape::{Landscape, ModelFeatures};

/// The model's predictions against a landscape's recorded means, over its
/// configs with a throughput that lie within the levels the model recorded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Accuracy {
    /// Configs compared.
    pub configs: usize,
    /// Median of |ln(predicted / recorded throughput)| (0.1: about 10 % off).
    pub median_log_error: f64,
    /// Spearman's rank correlation of predicted and recorded throughput:
    /// what a search started from the prediction depends on (1: the same order).
    pub rank_correlation: f64,
}

/// The model's accuracy on `landscape`, whose model has `features`.
pub fn accuracy(model: &LandscapeModel, features: &ModelFeatures, landscape: &Landscape) -> Option<Accuracy> {
    let mut pairs: Vec<(f64, f64)> = landscape
        .means()
        .into_iter()
        .filter(|(_, recorded)| recorded.throughput_rps > 0.0)
        .filter_map(|(point, recorded)| {
            let settings = settings_of_point(&landscape.space, point);
            model.within_recorded(&settings).then(|| {
                let predicted = model.predict(&settings, features).figures.throughput_rps;
                (predicted, recorded.throughput_rps)
            })
        })
        .collect();
    if pairs.len() < 2 {
        return None;
    }
    pairs.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut errors: Vec<f64> = pairs.iter().map(|(p, r)| (p / r).ln().abs()).collect();
    let median_log_error = crate::stats::median(&mut errors)?;
    let recorded: Vec<f64> = pairs.iter().map(|(_, r)| *r).collect();
    let predicted: Vec<f64> = pairs.iter().map(|(p, _)| *p).collect();
    Some(Accuracy {
        configs: pairs.len(),
        median_log_error,
        rank_correlation: pearson(&ranks(&predicted), &ranks(&recorded)),
    })
}

/// The rank of each value (1-based; ties share their mean rank).
fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start;
        while end + 1 < order.len() && values[order[end + 1]] == values[order[start]] {
            end += 1;
        }
        let shared = (start + end) as f64 / 2.0 + 1.0;
        for &i in &order[start..=end] {
            ranks[i] = shared;
        }
        start = end + 1;
    }
    ranks
}

/// Pearson's correlation (0 when either side does not vary).
fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (ma, mb) = (mean(a), mean(b));
    let covariance: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let spread = |v: &[f64], m: f64| v.iter().map(|x| (x - m).powi(2)).sum::<f64>().sqrt();
    let denominator = spread(a, ma) * spread(b, mb);
    if denominator > 0.0 {
        covariance / denominator
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_share_ties_and_correlation_reads_the_order() {
        assert_eq!(ranks(&[10.0, 30.0, 20.0, 20.0]), vec![1.0, 4.0, 2.5, 2.5]);
        let up = [1.0, 2.0, 3.0, 4.0];
        assert!((pearson(&ranks(&up), &ranks(&[5.0, 6.0, 70.0, 80.0])) - 1.0).abs() < 1e-12);
        assert!((pearson(&ranks(&up), &ranks(&[4.0, 3.0, 2.0, 1.0])) + 1.0).abs() < 1e-12);
        assert_eq!(pearson(&up, &[1.0; 4]), 0.0);
    }

    #[test]
    fn a_model_fitted_on_the_landscape_itself_predicts_its_order() {
        let priors = crate::predict::bundled_at(Some(16));
        let (name, bert) = priors.iter().find(|(_, l)| l.model.as_deref() == Some("bert")).unwrap();
        let model = crate::predict::fit(&vec![(name.clone(), bert.clone())]).unwrap();
        let own = accuracy(&model, &bert.features.unwrap(), bert).unwrap();
        assert_eq!(
            own.configs,
            bert.means().values().filter(|f| f.throughput_rps > 0.0).count()
        );
        assert!(own.rank_correlation > 0.7, "{own:?}");
        assert!(own.median_log_error < 0.3, "{own:?}");
    }
}
