//! How `servetune bench` prints a measurement: the load's figures, the
//! server's (memory, queue, inference time, observer cost), and a replay's
//! or a profile's own (per model, fidelity to the log, at the peak).

use crate::bench::Measurement;
use crate::load::TrafficReport;

/// The measurement's figures, load and server.
pub fn print_measurement(m: &Measurement) {
    let l = &m.load;
    println!(
        "requests      {} (ok {}, errors {})   throughput {:.1} req/s   error rate {:.2}%",
        l.requests,
        l.ok,
        l.errors.total,
        l.throughput_rps,
        l.error_rate * 100.0
    );
    let row = |name: &str, s: &crate::measure::LatencySummary| {
        println!(
            "{name:<13} p50 {:.2}  p90 {:.2}  p95 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  mean {:.2}",
            s.p50, s.p90, s.p95, s.p99, s.p999, s.max, s.mean
        )
    };
    row("latency ms", &l.latency_ms);
    if (l.latency_uncorrected_ms.p99 - l.latency_ms.p99).abs() > 0.05 * l.latency_ms.p99.max(0.001) {
        row("uncorrected", &l.latency_uncorrected_ms);
    }
    let e = &l.errors;
    println!(
        "errors        connect {}  timeout {}  503 {}  4xx {}  5xx {}  io {}  other {}",
        e.connect, e.timeout, e.status_503, e.status_4xx, e.status_5xx, e.io, e.status_other
    );
    println!(
        "sends         late {}  dropped {}  unfinished at end {}",
        l.late_sends, l.dropped_sends, l.unfinished_at_end
    );
    if let Some(mem) = &m.memory_mb {
        println!(
            "memory MB     rss peak {:.0}  rss mean {:.0}  pss peak {:.0}  pss mean {:.0}   cpu {:.2} cores",
            mem.rss_peak, mem.rss_mean, mem.pss_peak, mem.pss_mean, mem.cpu_cores
        );
    }
    if let Some(server) = &m.server {
        println!(
            "server        inference {:.2} ms mean  queue {:.2} ms mean  ({} requests)",
            server.inference_ms_mean, server.queue_ms_mean, server.requests
        );
    }
    if let Some(s) = &l.stability {
        let rates: Vec<String> = s.sub_window_rps.iter().map(|r| format!("{r:.0}")).collect();
        println!(
            "steadiness    {} (last three {:.0}s sub-windows: spread {:.1}%; limits: trend {:.1}%, spread {:.1}%): req/s {}",
            if s.stable { "steady" } else { "NOT steady at the cap" },
            s.sub_window_s,
            s.spread_pct,
            s.tolerance_pct,
            s.tolerance_pct * 3.0,
            rates.join(" ")
        );
    }
    if let Some(o) = &m.observer {
        println!(
            "observer      {:.3} CPU s for {} samples ({} with PSS): {:.2}% of one core",
            o.cpu_s,
            o.samples,
            o.pss_samples,
            o.cpu_share * 100.0
        );
    }
}

pub fn print_traffic(traffic: &TrafficReport) {
    if let Some(r) = &traffic.replay {
        println!(
            "replay        {} at {}x{}: {} requests in the slice, {} unreadable lines skipped, {} other requests",
            r.log,
            r.speed,
            if r.looped { " looped" } else { "" },
            r.slice_requests,
            r.unreadable_lines,
            r.other_lines
        );
        println!(
            "followed      sent {:.1} req/s of {:.1} asked ({:.1} recorded)   lateness p50 {:.2}  p99 {:.2}  max {:.2} ms   late {}  dropped {}",
            r.sent_rps,
            r.asked_rps,
            r.recorded_rps,
            r.lateness_ms.p50,
            r.lateness_ms.p99,
            r.lateness_ms.max,
            r.late_sends,
            r.dropped
        );
    }
    for (model, m) in &traffic.models {
        println!(
            "model {model:<8} {} requests  {:.1} req/s  p50 {:.2}  p99 {:.2} ms  error rate {:.2}%",
            m.requests,
            m.throughput_rps,
            m.p50_ms,
            m.p99_ms,
            m.error_rate * 100.0
        );
    }
    if let Some(p) = &traffic.peak {
        println!(
            "at peak       {:.0} req/s asked over {:.0}s: {:.1} req/s  p50 {:.2}  p99 {:.2} ms  error rate {:.2}%",
            p.rate_rps,
            p.seconds,
            p.throughput_rps,
            p.p50_ms,
            p.p99_ms,
            p.error_rate * 100.0
        );
    }
}
