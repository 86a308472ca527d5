//! The load loop: one worker loop, parameterised by the schedule.
//!
//! Each load thread runs a single-threaded tokio runtime; its tasks (one per
//! virtual user, or one per connection in an open loop) each own their
//! connection and share the thread's `Recorder`. Threads are merged at the
//! end. Nothing is sent after the window; requests in flight then get a short
//! drain to finish (and are recorded as they end), after which whatever is
//! still open is counted as unfinished. Every wait is raced against that hard
//! stop and the cancellation token, so a stalled server never holds a run.
//!
//! Open loop: the i-th request is due at an absolute time (constant period
//! or Poisson arrivals, a rate profile, or a replayed log's instants: see
//! `due`); a connection task takes the next due slot when it is
//! free, waits until it is due, and latency is measured from that due time
//! (or from the actual send when the connection sat idle until then, so the
//! timer's own tick is not blamed on the server).
//! When every connection is busy the slot waits — its latency includes the
//! wait (coordinated omission corrected) — and slots never taken before the
//! end are counted as dropped.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::LocalSet;

use tokio::time::{sleep_until, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::due::{DueTimes, Pick};
use super::error::LoadError;
use super::http::{Connection, Failure};
use super::mix::Mix;
use super::progress::Progress;
use super::request::RenderedRequests;
pub use super::schedule::{Arrival, Schedule};
use super::stages::Stages;
use super::tls::TlsTarget;
use super::traffic::{TrafficRecorder, TrafficReport};
use super::window::{self, StabilityRule, WindowShape, WindowTokens};
use crate::measure::{ErrorClass, LoadReport, Recorder};

/// Everything one run needs.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    pub address: SocketAddr,
    pub requests: Arc<RenderedRequests>,
    pub schedule: Schedule,
    /// Warm-up before the window (rounded up to whole seconds); with a
    /// stability rule, the least warm-up.
    pub warmup: Duration,
    /// The window; with a stability rule, three sub-windows of a third of it.
    pub duration: Duration,
    /// Go on until throughput is steady (see `window`), or measure exactly
    /// `duration` when None.
    pub stability: Option<StabilityRule>,
    pub request_timeout: Duration,
    /// Open loop: connections, hence requests in flight, at most.
    pub max_in_flight: usize,
    pub threads: usize,
    pub seed: u64,
    /// TLS settings when the URL is https.
    pub tls: Option<Arc<TlsTarget>>,
    /// Several models: which model (request group) and body each request
    /// of a closed loop, a rate or a profile is (None: one request, its
    /// bodies round-robin; a replay picks its own).
    pub mix: Option<Arc<Mix>>,
}

/// A send counted as late when it leaves this long after its due time.
const LATE_AFTER: Duration = Duration::from_millis(10);
/// After the window, requests in flight get this long (at most the request
/// timeout) to finish and be recorded; those still open then are counted as
/// unfinished. No request is sent after the window.
const DRAIN: Duration = Duration::from_secs(2);
/// Pause after a failed connect, so a dead server is not spun on.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// Resolves `host:port` to the first address.
pub async fn resolve(host: &str, port: u16) -> Result<SocketAddr, LoadError> {
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| LoadError::Unreachable {
            address: format!("{host}:{port}"),
            reason: e.to_string(),
        })?
        .next()
        .ok_or_else(|| LoadError::Unreachable {
            address: format!("{host}:{port}"),
            reason: "no address".into(),
        })
}

/// Runs the plan and returns its figures. Fails fast when the server cannot
/// even be connected to; later failures are counted, not raised.
pub async fn run_load(
    plan: LoadPlan,
    token: CancellationToken,
    progress: Arc<Progress>,
) -> Result<LoadReport, LoadError> {
    Ok(run_load_traffic(plan, token, progress).await?.0)
}

/// `run_load`, with a replay's or a profile's own figures too.
pub async fn run_load_traffic(
    plan: LoadPlan,
    token: CancellationToken,
    progress: Arc<Progress>,
) -> Result<(LoadReport, TrafficReport), LoadError> {
    validate(&plan)?;
    match Connection::open(plan.address, Duration::from_secs(3), plan.tls.as_deref()).await {
        Err(Failure::Connect(e) | Failure::Io(e)) => {
            return Err(LoadError::Unreachable {
                address: plan.address.to_string(),
                reason: e.to_string(),
            });
        }
        Err(Failure::Tls(e)) => {
            return Err(LoadError::Unreachable {
                address: plan.address.to_string(),
                reason: format!(
                    "TLS handshake failed: {e} (a plain-HTTP port, or a certificate of an unknown CA: see --insecure-tls, or ca_file and insecure_tls in the target file)"
                ),
            });
        }
        _ => {}
    }
    let plan = Arc::new(plan);
    let start = Instant::now() + Duration::from_millis(20);
    let shape = window_shape(&plan);
    let tokens = Arc::new(WindowTokens::new(start, shape.latest_end(start)));
    let (decided, outcome) = tokio::sync::oneshot::channel();
    let monitor = tokio::spawn(window::drive(
        shape,
        start,
        Arc::clone(&tokens),
        Arc::clone(&progress),
        token.clone(),
        decided,
    ));
    let mut handles = Vec::new();
    for thread_index in 0..plan.threads {
        let plan = Arc::clone(&plan);
        let token = token.clone();
        let progress = Arc::clone(&progress);
        let tokens = Arc::clone(&tokens);
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name(format!("servetune-load-{thread_index}"))
            .spawn(move || {
                let _ = sender.send(run_thread(&plan, thread_index, start, token, tokens, progress));
            });
        if let Err(e) = spawned {
            monitor.abort();
            return Err(LoadError::Thread(e.to_string()));
        }
        handles.push(receiver);
    }
    let mut merged = Recorder::new(start, shape.warmup, shape.slot());
    let mut traffic = TrafficRecorder::new(&plan.schedule, plan.mix.as_deref(), start, shape.warmup, shape.slot());
    let mut failure = None;
    for handle in handles {
        match handle.await {
            Ok(Ok((recorder, thread_traffic))) => {
                merged.merge(recorder);
                traffic.merge(thread_traffic);
            }
            Ok(Err(e)) => failure = Some(e),
            Err(_) => failure = Some(LoadError::Thread("a load thread panicked".into())),
        }
    }
    let outcome = outcome.await;
    monitor.abort();
    tokens.hard_stop.cancel();
    if let Some(failure) = failure {
        return Err(failure);
    }
    let outcome = outcome.map_err(|_| LoadError::Thread("the window monitor stopped".into()))?;
    let mut report = merged.report(outcome.from, outcome.to);
    report.stability = outcome.stability;
    let traffic = traffic.report(&plan.schedule, &report, outcome.from, outcome.to);
    Ok((report, traffic))
}

/// The window `plan` asks for.
fn window_shape(plan: &LoadPlan) -> WindowShape {
    WindowShape {
        warmup: plan.warmup,
        duration: plan.duration,
        rule: plan.stability,
        drain: DRAIN.min(plan.request_timeout),
    }
}

fn validate(plan: &LoadPlan) -> Result<(), LoadError> {
    if plan.duration.is_zero() {
        return Err(LoadError::BadInput("--duration must be positive".into()));
    }
    if plan.threads == 0 || plan.max_in_flight == 0 {
        return Err(LoadError::BadInput(
            "threads and --max-in-flight must be at least 1".into(),
        ));
    }
    if let Schedule::Open { rate_per_s, .. } = plan.schedule {
        if !(rate_per_s.is_finite() && rate_per_s > 0.0) {
            return Err(LoadError::BadInput(format!(
                "--rate must be a positive number, not {rate_per_s}"
            )));
        }
    }
    Ok(())
}

/// What one thread's tasks share.
struct ThreadContext {
    plan: Arc<LoadPlan>,
    /// When sending stops (`closed`) and in-flight requests are cut
    /// (`hard_stop`, counted unfinished): decided by the window monitor.
    window: Arc<WindowTokens>,
    token: CancellationToken,
    recorder: RefCell<Recorder>,
    /// Per-model, peak and lateness observations (replays and profiles).
    traffic: RefCell<TrafficRecorder>,
    progress: Arc<Progress>,
    request_counter: Cell<u64>,
}

fn run_thread(
    plan: &Arc<LoadPlan>,
    thread_index: usize,
    start: Instant,
    token: CancellationToken,
    window: Arc<WindowTokens>,
    progress: Arc<Progress>,
) -> Result<(Recorder, TrafficRecorder), LoadError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LoadError::Thread(e.to_string()))?;
    let context = Rc::new(ThreadContext {
        plan: Arc::clone(plan),
        window,
        token,
        recorder: RefCell::new(Recorder::new(start, plan.warmup, window_shape(plan).slot())),
        traffic: RefCell::new(TrafficRecorder::new(
            &plan.schedule,
            plan.mix.as_deref(),
            start,
            plan.warmup,
            window_shape(plan).slot(),
        )),
        progress,
        request_counter: Cell::new(thread_index as u64),
    });
    let local = LocalSet::new();
    local.block_on(&runtime, async {
        sleep_until(start.into()).await;
        match &plan.schedule {
            Schedule::Closed { stages, think_time } => {
                run_closed(&context, stages, *think_time, thread_index, start).await
            }
            open => {
                let due = due_times(open, start, plan, thread_index);
                run_open(&context, due, thread_index).await
            }
        }
    });
    drop(local);
    let context = Rc::try_unwrap(context).map_err(|_| LoadError::Thread("tasks outlived the run".into()))?;
    Ok((context.recorder.into_inner(), context.traffic.into_inner()))
}

/// This thread's due times for an open-loop schedule.
fn due_times(schedule: &Schedule, start: Instant, plan: &LoadPlan, thread_index: usize) -> DueTimes {
    match schedule {
        Schedule::Open { rate_per_s, arrival } => {
            DueTimes::rate(start, *rate_per_s, *arrival, plan.threads, thread_index, plan.seed)
        }
        Schedule::Profile { profile, arrival } => {
            DueTimes::profile(start, profile.clone(), *arrival, plan.threads, thread_index, plan.seed)
        }
        Schedule::Replay(traffic) => DueTimes::replay(start, Arc::clone(traffic), plan.threads, thread_index),
        Schedule::Closed { .. } => unreachable!("a closed loop has no due times"),
    }
}

/// How one request ended, from the loop's point of view.
enum Step {
    Done,
    WindowClosed,
}

/// What one task keeps between its requests: its connection, and timers
/// that are reset rather than created per request (registering timers and
/// cancellation waiters is a measurable share of the per-request cost).
struct Lane {
    connection: Option<Connection>,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
    hard_stop: Pin<Box<WaitForCancellationFutureOwned>>,
    timeout: Pin<Box<Sleep>>,
    /// The pacing timer (open-loop due times, think time).
    pace: Pin<Box<Sleep>>,
}

impl Lane {
    fn new(context: &ThreadContext) -> Self {
        Self {
            connection: None,
            cancelled: Box::pin(context.token.clone().cancelled_owned()),
            closed: Box::pin(context.window.closed.clone().cancelled_owned()),
            hard_stop: Box::pin(context.window.hard_stop.clone().cancelled_owned()),
            timeout: Box::pin(sleep_until(Instant::now().into())),
            pace: Box::pin(sleep_until(Instant::now().into())),
        }
    }

    /// Waits until `deadline` (false when cancelled or the window closed).
    async fn pace_until(&mut self, deadline: Instant, end: Instant) -> bool {
        if deadline >= end {
            return false;
        }
        self.pace.as_mut().reset(deadline.into());
        tokio::select! {
            biased;
            _ = self.cancelled.as_mut() => false,
            _ = self.closed.as_mut() => false,
            _ = self.pace.as_mut() => true,
        }
    }

    /// Waits until `deadline` unless cancelled (the window may be closed).
    async fn pause_until(&mut self, deadline: Instant) {
        self.pace.as_mut().reset(deadline.into());
        tokio::select! {
            biased;
            _ = self.cancelled.as_mut() => {}
            _ = self.hard_stop.as_mut() => {}
            _ = self.pace.as_mut() => {}
        }
    }
}

impl ThreadContext {
    /// Records into the main recorder and the traffic recorders of `pick`.
    fn record(&self, pick: Pick, intended: Instant, record: impl Fn(&mut Recorder)) {
        record(&mut self.recorder.borrow_mut());
        if self.tracks_traffic() {
            self.traffic.borrow_mut().record(pick.group(), intended, record);
        }
    }

    /// Whether the schedule has figures of its own (per model, at peak).
    fn tracks_traffic(&self) -> bool {
        self.plan.mix.is_some() || matches!(self.plan.schedule, Schedule::Profile { .. } | Schedule::Replay(_))
    }
}

/// Sends one request on the lane's connection (opening it if needed),
/// racing the hard stop; records the outcome with latency from `intended`.
async fn send_one(context: &ThreadContext, lane: &mut Lane, intended: Instant, pick: Pick) -> Step {
    let plan = &context.plan;
    let index = context.request_counter.get();
    context.request_counter.set(index + plan.threads as u64);
    let pick = match (pick, &plan.mix) {
        (Pick::Next, Some(mix)) => mix.pick(index),
        _ => pick,
    };
    let sent = Instant::now();
    lane.timeout.as_mut().reset((sent + plan.request_timeout).into());
    let connection = &mut lane.connection;
    let exchange = async {
        if connection.is_none() {
            *connection = Some(Connection::open(plan.address, plan.request_timeout, plan.tls.as_deref()).await?);
        }
        connection
            .as_mut()
            .expect("opened above")
            .exchange(match pick {
                Pick::Next => plan.requests.get(index),
                Pick::Entry { group, body } => plan.requests.get_in(group, body),
            })
            .await
    };
    let outcome = tokio::select! {
        biased;
        _ = lane.cancelled.as_mut() => None,
        _ = lane.hard_stop.as_mut() => None,
        _ = lane.timeout.as_mut() => Some(None),
        result = exchange => Some(Some(result)),
    };
    let done = Instant::now();
    let Some(result) = outcome else {
        context.record(pick, intended, |r| r.record_unfinished(intended));
        lane.connection = None;
        return Step::WindowClosed;
    };
    let failure = match result {
        Some(Ok(response)) => {
            context.record(pick, intended, |r| {
                r.record_response(intended, sent, done, response.status)
            });
            let counter = match ErrorClass::of_status(response.status) {
                Some(_) => &context.progress.errors,
                None => &context.progress.ok,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            if !response.keep_alive {
                lane.connection = None;
            }
            return Step::Done;
        }
        Some(Err(Failure::Connect(_))) => ErrorClass::Connect,
        Some(Err(Failure::Tls(_))) => ErrorClass::Tls,
        Some(Err(Failure::Io(_) | Failure::Protocol(_))) => ErrorClass::Io,
        None => ErrorClass::Timeout,
    };
    context.record(pick, intended, |r| r.record_failure(intended, done, failure));
    context.progress.errors.fetch_add(1, Ordering::Relaxed);
    lane.connection = None;
    if failure == ErrorClass::Connect {
        lane.pause_until(Instant::now() + CONNECT_BACKOFF).await;
    }
    Step::Done
}

fn window_open(context: &ThreadContext) -> bool {
    !context.window.closed.is_cancelled() && !context.token.is_cancelled()
}

/// This thread's share of `total` users (users are dealt round-robin).
fn share(total: u32, threads: usize, thread_index: usize) -> usize {
    let total = total as usize;
    total / threads + usize::from(thread_index < total % threads)
}

async fn run_closed(
    context: &Rc<ThreadContext>,
    stages: &Stages,
    think_time: Duration,
    thread_index: usize,
    start: Instant,
) {
    let mut users: Vec<(Rc<Cell<bool>>, tokio::task::JoinHandle<()>)> = Vec::new();
    while window_open(context) {
        let wanted = share(stages.users_at(start.elapsed()), context.plan.threads, thread_index);
        users.retain(|(stop, handle)| !(stop.get() && handle.is_finished()));
        let running: Vec<usize> = (0..users.len()).filter(|&i| !users[i].0.get()).collect();
        if running.len() < wanted {
            for _ in running.len()..wanted {
                let stop = Rc::new(Cell::new(false));
                let handle = tokio::task::spawn_local(virtual_user(Rc::clone(context), Rc::clone(&stop), think_time));
                users.push((stop, handle));
            }
        } else {
            for &index in running.iter().skip(wanted) {
                users[index].0.set(true);
            }
        }
        tokio::select! {
            _ = context.token.cancelled() => break,
            _ = context.window.closed.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    for (_, handle) in users {
        let _ = handle.await;
    }
}

async fn virtual_user(context: Rc<ThreadContext>, stop: Rc<Cell<bool>>, think_time: Duration) {
    let mut lane = Lane::new(&context);
    while window_open(&context) && !stop.get() {
        let intended = Instant::now();
        if let Step::WindowClosed = send_one(&context, &mut lane, intended, Pick::Next).await {
            return;
        }
        if !think_time.is_zero() && !lane.pace_until(Instant::now() + think_time, context.window.end()).await {
            return;
        }
    }
}

async fn run_open(context: &Rc<ThreadContext>, due_times: DueTimes, thread_index: usize) {
    let plan = &context.plan;
    let slots = Rc::new(RefCell::new(due_times));
    let connections = share(plan.max_in_flight as u32, plan.threads, thread_index).max(1);
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let context = Rc::clone(context);
        let slots = Rc::clone(&slots);
        tasks.push(tokio::task::spawn_local(async move {
            let mut lane = Lane::new(&context);
            while window_open(&context) {
                let Some(slot) = slots.borrow_mut().take(context.window.end()) else {
                    break;
                };
                let due = slot.at;
                // Idle until due: any delay past it is the timer's (1 ms ticks),
                // not the server's, so latency counts from the actual send.
                // Busy past due: the server held this connection, so latency
                // counts from the due time (coordinated omission corrected).
                let idle_until_due = Instant::now() < due;
                if idle_until_due && !lane.pace_until(due, context.window.end()).await {
                    break;
                }
                let now = Instant::now();
                if context.tracks_traffic() {
                    context.traffic.borrow_mut().record_lateness(due, now);
                }
                if now > due + LATE_AFTER {
                    context.record(slot.pick, due, |r| r.record_late(due));
                }
                let intended = if idle_until_due { now } else { due };
                if let Step::WindowClosed = send_one(&context, &mut lane, intended, slot.pick).await {
                    break;
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    // Slots due before the end that no connection was free to take.
    let mut slots = slots.borrow_mut();
    while let Some(slot) = slots.take(context.window.end()) {
        context.record(slot.pick, slot.at, |r| r.record_dropped(slot.at));
    }
}
