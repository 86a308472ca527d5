//! Grid search: every point once, cold parameters outermost so a server
//! restarts as rarely as the grid allows.

use std::collections::HashSet;

use super::strategy::{History, SearchError, Strategy};
use crate::space::{Apply, Point, Space};

#[derive(Debug, Default)]
pub struct Grid {
    next: u128,
    proposed: HashSet<Point>,
}

impl Grid {
    pub fn new() -> Self {
        Self::default()
    }
}

/// The `index`-th point in an order where cold parameters vary slowest.
fn point_at(space: &Space, mut index: u128) -> Point {
    let mut order: Vec<usize> = (0..space.dimensions()).collect();
    // Least significant first: hot parameters, then cold ones.
    order.sort_by_key(|&i| space.parameters[i].apply == Apply::Cold);
    let mut point = vec![0; space.dimensions()];
    for dimension in order {
        let size = space.parameters[dimension].levels.len() as u128;
        point[dimension] = (index % size) as usize;
        index /= size;
    }
    point
}

impl Strategy for Grid {
    fn name(&self) -> &'static str {
        "grid"
    }

    fn ask(&mut self, space: &Space, history: &History) -> Result<Option<Point>, SearchError> {
        while self.next < space.cardinality() {
            let point = space.normalize(&point_at(space, self.next));
            self.next += 1;
            if !history.contains(&point) && self.proposed.insert(point.clone()) {
                return Ok(Some(point));
            }
        }
        Ok(None)
    }
}
