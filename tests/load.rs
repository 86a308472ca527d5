//! The load generator against small controlled HTTP servers inside the test
//! (known service times and stalls), where the right answer is known.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use servetune::load::{
    run_load, Arrival, Endpoint, LoadPlan, Progress, RenderedRequests, RequestSpec, Schedule, Stages,
};
use servetune::measure::LoadReport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How the controlled server behaves.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Answers 200 after `service`, except that every `period` it stalls for
    /// `stall` (requests arriving in the stall wait for its end).
    Stalling {
        service: Duration,
        period: Duration,
        stall: Duration,
    },
    /// Reads requests and never answers.
    Silent,
    /// Answers 503 at once.
    QueueFull,
    /// Answers with bytes that are not HTTP.
    Garbage,
    /// Answers in `slow` at its start, faster and faster until `fast` once
    /// `warm` has passed: a server still warming up (a JIT compiling).
    WarmingUp {
        slow: Duration,
        fast: Duration,
        warm: Duration,
    },
}

async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> bool {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = request.parse(buffer) {
            let length = request
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
                .unwrap_or(0);
            if buffer.len() >= head + length {
                buffer.drain(..head + length);
                return true;
            }
        }
        match stream.read_buf(buffer).await {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
    }
}

async fn serve(listener: TcpListener, behaviour: Behaviour) {
    let epoch = Instant::now();
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        stream.set_nodelay(true).unwrap();
        tokio::spawn(async move {
            let mut buffer = Vec::new();
            while read_request(&mut stream, &mut buffer).await {
                let reply: &[u8] = match behaviour {
                    Behaviour::Stalling { service, period, stall } => {
                        let phase = Duration::from_nanos((epoch.elapsed().as_nanos() % period.as_nanos()) as u64);
                        if phase < stall {
                            tokio::time::sleep(stall - phase).await;
                        }
                        tokio::time::sleep(service).await;
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                    }
                    Behaviour::Silent => {
                        std::future::pending::<()>().await;
                        unreachable!()
                    }
                    Behaviour::QueueFull => b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nfull",
                    Behaviour::WarmingUp { slow, fast, warm } => {
                        let progress = (epoch.elapsed().as_secs_f64() / warm.as_secs_f64()).min(1.0);
                        let service = slow.mul_f64(1.0 - progress) + fast.mul_f64(progress);
                        tokio::time::sleep(service).await;
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                    }
                    Behaviour::Garbage => b"\x16\x03\x01\x00\x02\x02\x28garbage",
                };
                if stream.write_all(reply).await.is_err() {
                    return;
                }
            }
        });
    }
}

async fn start_server(behaviour: Behaviour) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, behaviour));
    address
}

fn plan(address: SocketAddr, schedule: Schedule, warmup: Duration, duration: Duration) -> LoadPlan {
    let spec = RequestSpec {
        method: "POST".into(),
        endpoint: Endpoint::parse(&format!("http://{address}/predictions/x")).unwrap(),
        headers: vec![],
        content_type: Some("application/octet-stream".into()),
        bodies: vec![vec![1, 2, 3]],
    };
    LoadPlan {
        address,
        requests: Arc::new(RenderedRequests::render(&spec)),
        schedule,
        warmup,
        duration,
        request_timeout: Duration::from_secs(30),
        max_in_flight: 512,
        threads: 1,
        seed: 42,
        tls: None,
        stability: None,
        mix: None,
    }
}

async fn run(plan: LoadPlan) -> LoadReport {
    run_load(plan, CancellationToken::new(), Arc::new(Progress::default()))
        .await
        .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

const SERVICE: Duration = Duration::from_millis(10);
const PERIOD: Duration = Duration::from_secs(2);
const STALL: Duration = Duration::from_millis(500);

/// Latency quantile `q` in ms for an open loop against the stalling server,
/// given the service time as the client sees it (`service_ms`, measured by
/// an unstalled closed loop in the same run: 10 ms plus timer granularity):
/// a share `STALL/PERIOD` of arrivals land in a stall and wait for its end,
/// uniformly between 0 and the stall length, then take the service time.
fn analytic_quantile_ms(q: f64, service_ms: f64) -> f64 {
    let stalled = STALL.as_secs_f64() / PERIOD.as_secs_f64();
    if q <= 1.0 - stalled {
        return service_ms;
    }
    service_ms + (q - (1.0 - stalled)) / stalled * STALL.as_secs_f64() * 1000.0
}

fn within(measured: f64, expected: f64, tolerance: f64) -> bool {
    (measured - expected).abs() <= expected * tolerance
}

#[test]
fn open_loop_percentiles_match_the_analytic_expectation_and_closed_loop_hides_the_stalls() {
    runtime().block_on(async {
        let address = start_server(Behaviour::Stalling {
            service: SERVICE,
            period: PERIOD,
            stall: STALL,
        })
        .await;
        // 10 s is exactly five stall periods, whatever the phase.
        let open = run(plan(
            address,
            Schedule::Open {
                rate_per_s: 200.0,
                arrival: Arrival::Constant,
            },
            Duration::from_secs(1),
            Duration::from_secs(10),
        ))
        .await;
        let closed = run(plan(
            address,
            Schedule::Closed {
                stages: Stages::constant(4, Duration::from_secs(11)),
                think_time: Duration::ZERO,
            },
            Duration::from_secs(1),
            Duration::from_secs(10),
        ))
        .await;
        let l = open.latency_ms;
        eprintln!("open loop (corrected):  {l:?}");
        eprintln!("closed loop, 4 users:   {:?}", closed.latency_ms);
        let service_ms = closed.latency_ms.p50;
        for (q, measured) in [(0.50, l.p50), (0.90, l.p90), (0.95, l.p95), (0.99, l.p99)] {
            let expected = analytic_quantile_ms(q, service_ms);
            assert!(
                within(measured, expected, 0.05),
                "p{}: measured {measured:.1} ms, expected {expected:.1} ms",
                q * 100.0
            );
        }
        assert!((10.0..15.0).contains(&service_ms), "service time {service_ms:.2} ms");
        assert!(
            within(open.throughput_rps, 200.0, 0.03),
            "throughput {:.1}",
            open.throughput_rps
        );
        assert_eq!((open.dropped_sends, open.errors.total), (0, 0));
        // A closed loop waits out each stall once per user and reports a calm p99.
        assert!(
            closed.latency_ms.p99 < 30.0,
            "closed loop p99 {:.1}",
            closed.latency_ms.p99
        );
        assert!(l.p99 > 10.0 * closed.latency_ms.p99);
    });
}

#[test]
fn an_in_flight_cap_makes_sends_late_and_latency_still_counts_from_the_schedule() {
    runtime().block_on(async {
        let address = start_server(Behaviour::Stalling {
            service: SERVICE,
            period: PERIOD,
            stall: STALL,
        })
        .await;
        let mut capped = plan(
            address,
            Schedule::Open {
                rate_per_s: 200.0,
                arrival: Arrival::Constant,
            },
            Duration::from_secs(1),
            Duration::from_secs(4),
        );
        capped.max_in_flight = 20;
        let report = run(capped).await;
        eprintln!(
            "capped: late {} corrected {:?} uncorrected {:?}",
            report.late_sends, report.latency_ms, report.latency_uncorrected_ms
        );
        assert!(report.late_sends > 50, "late sends are counted: {}", report.late_sends);
        assert_eq!(report.dropped_sends, 0);
        assert!(
            report.latency_ms.p99 > 400.0,
            "corrected p99 {:.1}",
            report.latency_ms.p99
        );
        assert!(
            report.latency_uncorrected_ms.p90 < report.latency_ms.p90 / 2.0,
            "measuring from the actual send hides the wait: {:?} vs {:?}",
            report.latency_uncorrected_ms,
            report.latency_ms
        );
    });
}

#[test]
fn poisson_arrivals_keep_the_rate_and_stages_ramp_users() {
    runtime().block_on(async {
        let address = start_server(Behaviour::Stalling {
            service: Duration::from_millis(2),
            period: PERIOD,
            stall: Duration::ZERO,
        })
        .await;
        let poisson = run(plan(
            address,
            Schedule::Open {
                rate_per_s: 300.0,
                arrival: Arrival::Poisson,
            },
            Duration::from_millis(500),
            Duration::from_secs(4),
        ))
        .await;
        assert!(
            within(poisson.throughput_rps, 300.0, 0.10),
            "poisson throughput {:.1}",
            poisson.throughput_rps
        );

        let stages: Stages = "0:8@2s,8@2s".parse().unwrap();
        let ramp = run(plan(
            address,
            Schedule::Closed {
                stages,
                think_time: Duration::from_millis(20),
            },
            Duration::ZERO,
            Duration::from_secs(4),
        ))
        .await;
        let per_second: Vec<u64> = ramp.timeline.iter().map(|s| s.ok).collect();
        eprintln!("ramp timeline: {per_second:?}");
        assert!(per_second[0] < per_second[2], "users ramp up: {per_second:?}");
        // 8 users, 20 ms think + ~2 ms service: about 360 requests/s when held.
        assert!(per_second[3] > 250, "held stage: {per_second:?}");
    });
}

#[test]
fn a_refused_connection_is_a_clear_error() {
    runtime().block_on(async {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let started = Instant::now();
        let error = run_load(
            plan(
                address,
                Schedule::Open {
                    rate_per_s: 10.0,
                    arrival: Arrival::Constant,
                },
                Duration::ZERO,
                Duration::from_secs(5),
            ),
            CancellationToken::new(),
            Arc::new(Progress::default()),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("cannot connect") && error.contains(&port.to_string()),
            "{error}"
        );
        assert!(started.elapsed() < Duration::from_secs(4));
    });
}

#[test]
fn a_server_that_never_answers_ends_with_the_window_and_is_counted() {
    runtime().block_on(async {
        let address = start_server(Behaviour::Silent).await;
        let started = Instant::now();
        let report = run(plan(
            address,
            Schedule::Open {
                rate_per_s: 50.0,
                arrival: Arrival::Constant,
            },
            Duration::ZERO,
            Duration::from_secs(2),
        ))
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the run ended with its window and drain"
        );
        assert_eq!(report.ok, 0);
        assert!(
            report.unfinished_at_end >= 90,
            "in-flight requests at the end are counted: {}",
            report.unfinished_at_end
        );
        assert!(report.error_rate > 0.99);
    });
}

#[test]
fn error_statuses_and_non_http_answers_are_classified() {
    runtime().block_on(async {
        let full = start_server(Behaviour::QueueFull).await;
        let report = run(plan(
            full,
            Schedule::Closed {
                stages: Stages::constant(2, Duration::from_secs(1)),
                think_time: Duration::ZERO,
            },
            Duration::ZERO,
            Duration::from_secs(1),
        ))
        .await;
        assert!(
            report.errors.status_503 > 100 && report.errors.status_503 == report.errors.total,
            "{:?}",
            report.errors
        );
        assert_eq!(report.ok, 0);

        let garbage = start_server(Behaviour::Garbage).await;
        let report = run(plan(
            garbage,
            Schedule::Open {
                rate_per_s: 50.0,
                arrival: Arrival::Constant,
            },
            Duration::ZERO,
            Duration::from_secs(1),
        ))
        .await;
        assert!(
            report.errors.io >= 40 && report.errors.io == report.errors.total,
            "{:?}",
            report.errors
        );
    });
}

/// A TLS server with a self-signed certificate answering 200 to everything.
async fn start_tls_server() -> SocketAddr {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(stream).await else {
                    return;
                };
                let mut buffer = Vec::new();
                loop {
                    let mut chunk = [0u8; 4096];
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                    }
                    while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        // Requests here carry a 3-byte body.
                        if buffer.len() < end + 4 + 3 {
                            break;
                        }
                        buffer.drain(..end + 4 + 3);
                        if stream
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
    });
    address
}

fn tls_plan(address: SocketAddr, verification: servetune::load::tls::Verification) -> LoadPlan {
    let mut plan = plan(
        address,
        Schedule::Closed {
            stages: Stages::constant(2, Duration::from_secs(2)),
            think_time: Duration::ZERO,
        },
        Duration::ZERO,
        Duration::from_secs(1),
    );
    plan.tls = Some(Arc::new(
        servetune::load::tls::tls_target("localhost", &verification).unwrap(),
    ));
    plan
}

#[test]
fn https_works_and_tls_mistakes_are_clear_errors() {
    use servetune::load::tls::Verification;
    runtime().block_on(async {
        let secure = start_tls_server().await;
        let report = run(tls_plan(secure, Verification::Insecure)).await;
        assert!(report.ok > 50 && report.errors.total == 0, "{:?}", report.errors);

        let untrusted = run_load(
            tls_plan(secure, Verification::WebPki),
            CancellationToken::new(),
            Arc::new(Progress::default()),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            untrusted.contains("TLS handshake failed") && untrusted.contains("--insecure-tls"),
            "{untrusted}"
        );

        let plain = start_server(Behaviour::Stalling {
            service: SERVICE,
            period: PERIOD,
            stall: Duration::ZERO,
        })
        .await;
        let mismatch = run_load(
            tls_plan(plain, Verification::Insecure),
            CancellationToken::new(),
            Arc::new(Progress::default()),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            mismatch.contains("TLS handshake failed"),
            "TLS to a plain port: {mismatch}"
        );
    });
}

#[test]
fn a_window_waits_until_throughput_is_steady() {
    runtime().block_on(async {
        // 30 ms per request at the start, 10 ms from 5 s on: 8 users make
        // about 270/s at first and 800/s once warm.
        let address = start_server(Behaviour::WarmingUp {
            slow: Duration::from_millis(30),
            fast: Duration::from_millis(10),
            warm: Duration::from_secs(5),
        })
        .await;
        let closed = |warmup: Duration, duration: Duration| Schedule::Closed {
            stages: Stages::constant(8, warmup + duration),
            think_time: Duration::ZERO,
        };
        let fixed = run(plan(
            address,
            closed(Duration::from_secs(1), Duration::from_secs(3)),
            Duration::from_secs(1),
            Duration::from_secs(3),
        ))
        .await;
        let address = start_server(Behaviour::WarmingUp {
            slow: Duration::from_millis(30),
            fast: Duration::from_millis(10),
            warm: Duration::from_secs(5),
        })
        .await;
        let mut steady_plan = plan(
            address,
            closed(Duration::from_secs(1), Duration::from_secs(3)),
            Duration::from_secs(1),
            Duration::from_secs(3),
        );
        steady_plan.stability = Some(servetune::load::StabilityRule::within(Duration::from_secs(12)));
        let steady = run(steady_plan).await;
        // The same server again, now warm: what the steady window should have seen.
        let warm = run(plan(
            address,
            closed(Duration::from_secs(1), Duration::from_secs(3)),
            Duration::from_secs(1),
            Duration::from_secs(3),
        ))
        .await;
        let stability = steady
            .stability
            .clone()
            .expect("an adaptive window reports its steadiness");
        eprintln!(
            "fixed: {:.0}/s; steady: {:.0}/s after {:.1} s, {stability:?}",
            fixed.throughput_rps, steady.throughput_rps, steady.warmup_s
        );
        assert!(stability.stable, "it became steady within the cap: {stability:?}");
        assert!(
            steady.warmup_s >= 3.0,
            "the ramp counted as warm-up: {}",
            steady.warmup_s
        );
        assert!(
            within(steady.throughput_rps, warm.throughput_rps, 0.07),
            "steady throughput is the warm server's: {:.0}/s vs {:.0}/s",
            steady.throughput_rps,
            warm.throughput_rps
        );
        assert!(
            fixed.throughput_rps < 0.85 * steady.throughput_rps,
            "a fixed window right after the start measures the warm-up: {:.0}/s",
            fixed.throughput_rps
        );
    });
}
