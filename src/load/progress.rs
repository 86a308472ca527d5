//! Live counters of a load run: requests answered and failed so far. The
//! load lanes count into them as requests complete; the measurement window
//! reads sub-window rates from them and callers draw a progress line.

use std::sync::atomic::AtomicU64;

/// Live counters for a progress line.
#[derive(Debug, Default)]
pub struct Progress {
    pub ok: AtomicU64,
    pub errors: AtomicU64,
}
