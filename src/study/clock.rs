//! The study's clock: real time for a server, simulated time for a recorded
//! landscape (advanced by what each move and window would have cost). The
//! budget reads elapsed time from it; nothing here sleeps.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where a study's elapsed time comes from.
#[derive(Debug, Clone)]
pub enum Clock {
    /// Wall-clock time since the clock was made.
    Wall(Instant),
    /// Time that passes only when the testbed says so (shared by its clones).
    Simulated(Arc<Mutex<Duration>>),
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
        }
    }

    /// Lets `by` pass on a simulated clock (a wall clock passes by itself).
    pub fn advance(&self, by: Duration) {
        if let Clock::Simulated(now) = self {
            *now.lock().expect("the simulated clock is never poisoned") += by;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulated_clock_moves_only_when_told_and_its_clones_share_it() {
        let clock = Clock::simulated();
        let twin = clock.clone();
        assert_eq!(clock.elapsed(), Duration::ZERO);
        twin.advance(Duration::from_secs(90));
        assert_eq!(clock.elapsed(), Duration::from_secs(90));
    }
}
