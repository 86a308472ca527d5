//! A shared study held in memory: several study loops of one process claim
//! candidates from it, number their trials and append their results as the
//! workers of a PostgreSQL study do, without a database — what `servetune
//! replay` uses to simulate a shared study on a recorded landscape. Each
//! handle (`joined_by`) is one worker; nothing outlives the process.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::{Appended, Claimed, KeepAlive, LostEntry, PgStudy, Store, StoreError, StudyState};
use crate::space::Point;
use crate::trial::Entry;

/// One worker's handle on a study in memory.
#[derive(Debug, Clone)]
pub struct MemoryStudy {
    state: Arc<Mutex<State>>,
    worker: String,
}

#[derive(Debug)]
struct State {
    next_number: usize,
    /// (number, point, worker) of the trials being measured.
    running: Vec<(usize, Option<Point>, String)>,
    finished: Vec<Entry>,
    study: StudyState,
    /// Claims of a point another worker was measuring at that moment.
    measured_twice: usize,
}

impl MemoryStudy {
    /// A new study, as seen by its first worker (`worker`).
    pub fn new(worker: &str) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                next_number: 0,
                running: Vec::new(),
                finished: Vec::new(),
                study: StudyState::Running,
                measured_twice: 0,
            })),
            worker: worker.to_string(),
        }
    }

    /// The same study, as another worker sees it.
    pub fn joined_by(&self, worker: &str) -> Self {
        Self {
            state: self.state.clone(),
            worker: worker.to_string(),
        }
    }

    /// How many trials began on a point that another worker was measuring.
    pub fn measured_twice(&self) -> usize {
        self.lock().measured_twice
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Numbers a trial of `point` by this worker and marks it running.
    fn begin_trial(&self, point: Option<&Point>) -> usize {
        let mut state = self.lock();
        if point.is_some() && state.running.iter().any(|(_, p, _)| p.as_ref() == point) {
            state.measured_twice += 1;
        }
        let number = state.next_number;
        state.next_number += 1;
        state.running.push((number, point.cloned(), self.worker.clone()));
        number
    }

    fn finished_in_order(&self) -> Vec<Entry> {
        let mut finished = self.lock().finished.clone();
        finished.sort_by_key(|e| e.number);
        finished
    }

    /// Every finished trial, in number order.
    pub fn entries(&self) -> Vec<Entry> {
        self.finished_in_order()
    }
}

impl Store for MemoryStudy {
    async fn begin(&mut self, point: Option<&Point>, _next_local: usize) -> Result<usize, StoreError> {
        Ok(self.begin_trial(point))
    }

    fn keep_alive(&self, _number: usize, _every: Duration) -> Option<KeepAlive> {
        None
    }

    async fn append(&mut self, entry: &Entry) -> Result<Appended, StoreError> {
        let mut state = self.lock();
        state.running.retain(|(number, _, _)| *number != entry.number);
        let mut entry = entry.clone();
        entry.worker = Some(self.worker.clone());
        state.finished.push(entry);
        Ok(Appended::Kept)
    }

    async fn claim_next(
        &mut self,
        _grace: Duration,
        _lost: LostEntry<'_>,
        _next_local: usize,
    ) -> Result<Claimed, StoreError> {
        let finished = self.finished_in_order();
        let (study, pending) = {
            let state = self.lock();
            let pending = state.running.iter().filter_map(|(_, p, _)| p.clone()).collect();
            (state.study, pending)
        };
        let claimant = self.clone();
        Ok(Claimed::in_process(study, finished, pending, move |point| {
            claimant.begin_trial(Some(point))
        }))
    }

    async fn finish(&mut self) -> Result<(), StoreError> {
        self.lock().study = StudyState::Finished;
        Ok(())
    }

    fn keep_study_alive(&self, _every: Duration) -> Option<KeepAlive> {
        None
    }

    async fn give_up(&mut self, number: usize, _entry: &Entry) -> Result<(), StoreError> {
        self.lock().running.retain(|(n, _, _)| *n != number);
        Ok(())
    }

    async fn close_claims(&mut self) -> Result<(), StoreError> {
        self.lock().study = StudyState::Confirming;
        Ok(())
    }

    async fn running_elsewhere(&mut self, _grace: Duration, _lost: LostEntry<'_>) -> Result<usize, StoreError> {
        Ok(self.lock().running.len())
    }

    async fn finished_entries(&mut self) -> Result<Option<Vec<Entry>>, StoreError> {
        Ok(Some(self.finished_in_order()))
    }

    async fn every_entry(&mut self) -> Result<Option<Vec<Entry>>, StoreError> {
        Ok(Some(self.finished_in_order()))
    }

    fn shared(&mut self) -> Option<&mut PgStudy> {
        None
    }
}
