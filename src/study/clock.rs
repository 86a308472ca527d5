//! The study's clock: real time for a server, simulated time for a recorded
//! landscape (it passes by what each move and window would have cost). The
//! budget reads elapsed time from it.
//!
//! A simulated clock is either a study's own (time passes at once when the
//! testbed says so) or shared by several studies on one `Timeline` (the
//! workers of a simulated shared study): there a wait ends only when every
//! other study waits for later, so the store sees claims and results in
//! simulated time order (`Timeline::run_together` drives them).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Where a study's elapsed time comes from.
#[derive(Debug, Clone)]
pub enum Clock {
    /// Wall-clock time since the clock was made.
    Wall(Instant),
    /// Time that passes only when the testbed says so (shared by its clones).
    Simulated(Arc<Mutex<Duration>>),
    /// Simulated time shared by studies that run together.
    Shared(Timeline),
}

impl Clock {
    /// A wall clock started now.
    pub fn wall() -> Self {
        Clock::Wall(Instant::now())
    }

    /// A simulated clock at zero.
    pub fn simulated() -> Self {
        Clock::Simulated(Arc::new(Mutex::new(Duration::ZERO)))
    }

    /// Time since the clock started.
    pub fn elapsed(&self) -> Duration {
        match self {
            Clock::Wall(started) => started.elapsed(),
            Clock::Simulated(now) => *now.lock().expect("the simulated clock is never poisoned"),
            Clock::Shared(timeline) => timeline.lock().now,
        }
    }

    /// Lets `by` pass: at once on a study's own simulated clock, once
    /// every other study waits for later on a shared one; a real wait on a
    /// wall clock.
    pub async fn pass(&self, by: Duration) {
        match self {
            Clock::Wall(_) => tokio::time::sleep(by).await,
            Clock::Simulated(now) => *now.lock().expect("the simulated clock is never poisoned") += by,
            Clock::Shared(timeline) => {
                let until = timeline.lock().now + by;
                Wait {
                    timeline: timeline.clone(),
                    until,
                    id: None,
                }
                .await
            }
        }
    }
}

/// Simulated time shared by several studies.
#[derive(Debug, Clone, Default)]
pub struct Timeline(Arc<Mutex<Events>>);

#[derive(Debug, Default)]
struct Events {
    now: Duration,
    /// Waits not yet due: (until, id).
    waiting: Vec<(Duration, u64)>,
    /// Waits that are due (their time has come).
    due: Vec<u64>,
    next_id: u64,
}

impl Timeline {
    fn lock(&self) -> MutexGuard<'_, Events> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `studies` together on this timeline until each has ended: each
    /// goes on until it waits; when all wait, time moves to the earliest
    /// wait's end and that study goes on. Panics if they wait on nothing
    /// (none of them could ever go on).
    pub fn run_together<F: Future>(&self, studies: Vec<F>) -> Vec<F::Output> {
        let mut studies: Vec<Pin<Box<F>>> = studies.into_iter().map(Box::pin).collect();
        let mut outputs: Vec<Option<F::Output>> = studies.iter().map(|_| None).collect();
        let mut context = Context::from_waker(Waker::noop());
        loop {
            for (study, output) in studies.iter_mut().zip(outputs.iter_mut()) {
                if output.is_none() {
                    if let Poll::Ready(done) = study.as_mut().poll(&mut context) {
                        *output = Some(done);
                    }
                }
            }
            if outputs.iter().all(Option::is_some) {
                return outputs.into_iter().flatten().collect();
            }
            let mut events = self.lock();
            let Some(next) = (0..events.waiting.len()).min_by_key(|&i| events.waiting[i]) else {
                panic!("the studies on this timeline wait on nothing");
            };
            let (until, id) = events.waiting.swap_remove(next);
            events.now = events.now.max(until);
            events.due.push(id);
        }
    }
}

/// A wait on a shared timeline until `until`.
struct Wait {
    timeline: Timeline,
    until: Duration,
    id: Option<u64>,
}

impl Future for Wait {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        let timeline = self.timeline.clone();
        let mut events = timeline.lock();
        match self.id {
            None if self.until <= events.now => Poll::Ready(()),
            None => {
                let id = events.next_id;
                events.next_id += 1;
                events.waiting.push((self.until, id));
                self.id = Some(id);
                Poll::Pending
            }
            Some(id) => match events.due.iter().position(|&d| d == id) {
                Some(at) => {
                    events.due.swap_remove(at);
                    Poll::Ready(())
                }
                None => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt as _;

    #[test]
    fn a_simulated_clock_moves_only_when_told_and_its_clones_share_it() {
        let clock = Clock::simulated();
        let twin = clock.clone();
        assert_eq!(clock.elapsed(), Duration::ZERO);
        twin.pass(Duration::from_secs(90)).now_or_never().expect("at once");
        assert_eq!(clock.elapsed(), Duration::from_secs(90));
    }

    #[test]
    fn studies_on_a_shared_timeline_go_on_in_time_order() {
        let timeline = Timeline::default();
        let order = Mutex::new(Vec::new());
        let study = |name: &'static str, steps: Vec<u64>| {
            let (clock, order) = (Clock::Shared(timeline.clone()), &order);
            async move {
                for step in steps {
                    clock.pass(Duration::from_secs(step)).await;
                    order.lock().unwrap().push((name, clock.elapsed().as_secs()));
                }
                clock.elapsed()
            }
        };
        let ends = timeline.run_together(vec![
            study("a", vec![5, 5, 5]).boxed_local(),
            study("b", vec![7, 1]).boxed_local(),
        ]);
        assert_eq!(ends, [Duration::from_secs(15), Duration::from_secs(8)]);
        assert_eq!(
            order.into_inner().unwrap(),
            [("a", 5), ("b", 7), ("b", 8), ("a", 10), ("a", 15)]
        );
    }
}
