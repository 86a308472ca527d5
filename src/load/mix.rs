//! A synthetic load over several models of one TorchServe: each request
//! goes to one model, in the proportions of the mix, with a body from that
//! model's own samples. Whatever the schedule (virtual users, a rate, a
//! profile), request number `k` is the same model and body in every run, so
//! candidates are compared on identical traffic; the models are interleaved
//! (smooth weighted round-robin), never sent in runs of one model.

use super::due::Pick;
use super::error::LoadError;

/// Requests shared between models by weight.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    /// Model names, in the order of their request groups.
    pub models: Vec<String>,
    /// Each model's sample bodies (sent round-robin).
    pub bodies: Vec<Vec<Vec<u8>>>,
    /// Normalised weights (summing to 1), one per model.
    pub weights: Vec<f64>,
    /// The group of each request of one cycle.
    cycle: Vec<u32>,
}

/// Requests in one cycle of the mix: a weight is followed to within 1 %.
const CYCLE: usize = 100;

impl Mix {
    /// A mix of `(model, weight, bodies)`; the weights need not sum to 1
    /// but must be ≥ 0 with a positive total.
    pub fn new(parts: Vec<(String, f64, Vec<Vec<u8>>)>) -> Result<Self, LoadError> {
        if parts.is_empty() {
            return Err(LoadError::BadInput("a mix needs at least one model".into()));
        }
        if let Some((model, weight, _)) = parts.iter().find(|(_, w, _)| !(w.is_finite() && *w >= 0.0)) {
            return Err(LoadError::BadInput(format!(
                "mix: {model} = {weight}: a weight is a number ≥ 0"
            )));
        }
        let total: f64 = parts.iter().map(|(_, w, _)| w).sum();
        if total <= 0.0 {
            return Err(LoadError::BadInput(
                "mix: the weights sum to 0; give at least one model a positive share".into(),
            ));
        }
        let weights: Vec<f64> = parts.iter().map(|(_, w, _)| w / total).collect();
        let cycle = interleave(&weights, CYCLE);
        let (models, bodies) = parts.into_iter().map(|(model, _, bodies)| (model, bodies)).unzip();
        Ok(Self {
            models,
            bodies,
            weights,
            cycle,
        })
    }

    /// The model and body of request number `index`.
    pub fn pick(&self, index: u64) -> Pick {
        let length = self.cycle.len() as u64;
        Pick::Entry {
            group: self.cycle[(index % length) as usize],
            body: (index / length) as u32,
        }
    }
}

/// `length` group numbers in which group `i` appears about `weights[i] *
/// length` times, spread out: each step picks the group furthest behind
/// its share.
fn interleave(weights: &[f64], length: usize) -> Vec<u32> {
    let mut credit = vec![0.0; weights.len()];
    (0..length)
        .map(|_| {
            for (c, w) in credit.iter_mut().zip(weights) {
                *c += w;
            }
            let best = (0..weights.len())
                .max_by(|&a, &b| credit[a].total_cmp(&credit[b]).then(b.cmp(&a)))
                .expect("at least one group");
            credit[best] -= 1.0;
            best as u32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix(weights: &[f64]) -> Result<Mix, LoadError> {
        Mix::new(
            weights
                .iter()
                .enumerate()
                .map(|(i, &w)| (format!("m{i}"), w, vec![b"x".to_vec()]))
                .collect(),
        )
    }

    #[test]
    fn a_mix_follows_its_weights_interleaved() {
        let mix = mix(&[7.0, 3.0]).unwrap();
        assert_eq!(mix.weights, vec![0.7, 0.3]);
        let groups: Vec<usize> = (0..1000).map(|k| mix.pick(k).group().unwrap()).collect();
        let first = groups.iter().filter(|&&g| g == 0).count();
        assert_eq!(first, 700);
        let longest_run = groups
            .chunk_by(|a, b| a == b)
            .filter(|run| run[0] == 1)
            .map(<[usize]>::len)
            .max()
            .unwrap();
        assert_eq!(longest_run, 1, "the smaller share is never sent twice in a row");
        assert_eq!(mix.pick(0), mix.pick(0), "deterministic");
    }

    #[test]
    fn weights_must_be_usable() {
        assert!(mix(&[]).is_err());
        let zero = mix(&[0.0, 0.0]).unwrap_err().to_string();
        assert!(zero.contains("sum to 0"), "{zero}");
        assert!(mix(&[1.0, -1.0]).is_err());
        assert!(mix(&[f64::NAN]).is_err());
        assert_eq!(mix(&[0.0, 2.0]).unwrap().pick(5).group(), Some(1));
    }
}
