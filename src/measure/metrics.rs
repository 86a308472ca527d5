//! TorchServe's own metrics (`metrics_mode=prometheus`): request count,
//! inference latency and queue latency counters, read before and after a
//! window so the report can give means over exactly that window.

use std::collections::BTreeMap;

use serde::Serialize;

/// Sums of TorchServe's counters at one moment (all models together).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CounterSnapshot {
    pub requests: f64,
    pub inference_latency_us: f64,
    pub queue_latency_us: f64,
}

/// Means over a window, from two snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ServerLatency {
    pub requests: u64,
    pub inference_ms_mean: f64,
    pub queue_ms_mean: f64,
}

/// Parses Prometheus text exposition, summing each metric over its labels.
pub fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut sums = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name_and_labels, value) = match line.rsplit_once(' ') {
            Some(pair) => pair,
            None => continue,
        };
        let name = name_and_labels.split('{').next().unwrap_or("").trim();
        if let Ok(value) = value.trim().parse::<f64>() {
            *sums.entry(name.to_string()).or_insert(0.0) += value;
        }
    }
    sums
}

impl CounterSnapshot {
    pub fn from_prometheus(text: &str) -> Self {
        let sums = parse_prometheus(text);
        let get = |name: &str| sums.get(name).copied().unwrap_or(0.0);
        Self {
            requests: get("ts_inference_requests_total"),
            inference_latency_us: get("ts_inference_latency_microseconds"),
            queue_latency_us: get("ts_queue_latency_microseconds"),
        }
    }

    /// Means over the window from `self` (before) to `after`.
    pub fn delta(&self, after: &CounterSnapshot) -> ServerLatency {
        let requests = (after.requests - self.requests).max(0.0);
        let mean_ms = |before: f64, after: f64| {
            if requests > 0.0 {
                (after - before).max(0.0) / requests / 1000.0
            } else {
                0.0
            }
        };
        ServerLatency {
            requests: requests as u64,
            inference_ms_mean: mean_ms(self.inference_latency_us, after.inference_latency_us),
            queue_ms_mean: mean_ms(self.queue_latency_us, after.queue_latency_us),
        }
    }
}

/// Reads the metrics endpoint (`{base}/metrics`).
pub async fn scrape(http: &reqwest::Client, base_url: &str) -> Result<CounterSnapshot, String> {
    let url = format!("{base_url}/metrics");
    let response = http.get(&url).send().await.map_err(|e| format!("{url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url}: status {}", response.status()));
    }
    let text = response.text().await.map_err(|e| format!("{url}: {e}"))?;
    Ok(CounterSnapshot::from_prometheus(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_counters_over_labels_and_takes_deltas() {
        let before = CounterSnapshot::from_prometheus(
            "# HELP ts_inference_requests_total x\n# TYPE ts_inference_requests_total counter\n\
             ts_inference_requests_total{model_name=\"a\",model_version=\"default\",hostname=\"h\"} 10.0\n\
             ts_inference_requests_total{model_name=\"b\",model_version=\"default\",hostname=\"h\"} 5.0\n\
             ts_inference_latency_microseconds{model_name=\"a\"} 15000.0\n\
             ts_queue_latency_microseconds{model_name=\"a\"} 3000.0\n",
        );
        assert_eq!(before.requests, 15.0);
        let after = CounterSnapshot {
            requests: 25.0,
            inference_latency_us: 35000.0,
            queue_latency_us: 8000.0,
        };
        let window = before.delta(&after);
        assert_eq!(window.requests, 10);
        assert!((window.inference_ms_mean - 2.0).abs() < 1e-9);
        assert!((window.queue_ms_mean - 0.5).abs() < 1e-9);
    }
}
