//! Progress bars for pool work with `indicatif`.
//!
//! - `imap_unordered` yields each result as soon as it is done, so the
//!   consumer loop advances the bar one item at a time.
//! - `map_async` returns one handle for the whole job; the bar is drawn from
//!   [`ThreadPool::stats`], whose `completed` counter the workers bump as
//!   they finish chunks of the map, until the handle is ready.
//!
//! Run it with `cargo run -p parpool --example progress`.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use parpool::ThreadPool;
use std::time::Duration;

const ITEMS: u64 = 2000;

/// About 1 ms of work per item.
fn work(n: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(1));
    n * n
}

fn style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>14} [{bar:40}] {pos}/{len} {per_sec} {msg}")
        .expect("a valid template")
        .progress_chars("=> ")
}

fn main() {
    let pool = ThreadPool::new();
    let bars = MultiProgress::new();

    // 1. imap_unordered: one tick per result, in completion order.
    let bar = bars.add(ProgressBar::new(ITEMS));
    bar.set_style(style());
    bar.set_prefix("imap_unordered");
    let mut sum = 0u64;
    for square in pool.imap_unordered(work, 0..ITEMS) {
        sum += square;
        bar.inc(1);
    }
    bar.finish_with_message(format!("sum {sum}"));

    // 2. map_async: poll the pool's counters until the handle is ready.
    // `completed` counts every item the pool finished since it started, so
    // the bar shows the difference from a snapshot taken before the job.
    let bar = bars.add(ProgressBar::new(ITEMS));
    bar.set_style(style());
    bar.set_prefix("map_async");
    let before = pool.stats().completed;
    let handle = pool.chunked(8).map_async(work, 0..ITEMS);
    while !handle.wait_timeout(Duration::from_millis(20)) {
        let done = (pool.stats().completed - before) as u64;
        bar.set_position(done.min(ITEMS));
    }
    let squares = handle.get().expect("the map did not panic");
    bar.set_position(ITEMS);
    bar.finish_with_message(format!("sum {}", squares.iter().sum::<u64>()));

    let stats = pool.stats();
    println!(
        "done: {} items completed on {} workers, {} queued, {} running",
        stats.completed, stats.workers, stats.queued, stats.running
    );
}
