//! parpool's rows. PLACEHOLDER until parpool's core API lands on main: it
//! contributes no rows, and the report marks every parpool target N/A.

use crate::measure::Row;
use crate::work::Body;
use crate::workloads::Latency;
use std::sync::Arc;
use std::time::Duration;

/// Whether this build measures a real parpool.
pub const AVAILABLE: bool = false;

pub struct Pool;

impl Pool {
    pub fn new(_workers: usize) -> Pool {
        Pool
    }
}

pub fn slice_rows<'a, F: Body>(_: &'a Pool, _: &'a Arc<Vec<u64>>, _: F, _: u64) -> Vec<Row<'a>> {
    Vec::new()
}

pub fn range_rows<F: Body>(_: &Pool, _: u64, _: F, _: u64, _: u64, _: bool) -> Vec<Row<'_>> {
    Vec::new()
}

pub fn w4_rows(_: &Pool, _: u64, _: u64) -> Vec<Row<'_>> {
    Vec::new()
}

pub fn w7_apply(_: &Pool, _: usize, _: Duration) -> Option<Latency> {
    None
}

pub fn w6_busy<F: Body>(_: usize, _: &Arc<Vec<u64>>, _: F) -> Box<dyn std::any::Any> {
    Box::new(())
}

/// A W5 stream: `(items, consumer_iters) -> items consumed`.
pub type W5Stream = Box<dyn FnMut(u64, u32) -> u64>;

pub fn w5_prepare(_: usize) -> Option<W5Stream> {
    None
}
