//! `imap` as a `futures::Stream` under tokio: bounded, ordered, parallel
//! work awaited without blocking the executor's thread.
//!
//! The `futures` idiom
//! `stream::iter(inputs).map(|x| spawn(task(x))).buffered(n).try_collect()`
//! becomes `pool.imap(task, inputs).buffer(n).into_stream()` plus `try_collect`: the work
//! runs on the pool's threads, at most `n` inputs ahead of the consumer, with
//! no task allocated per item.
//!
//! Run it with `cargo run -p parpool --example tokio_stream`.

use futures::{StreamExt, TryStreamExt};
use parpool::ThreadPool;
use std::time::{Duration, Instant};

/// A CPU-bound, fallible task: the sum of the digits of `n`, rejecting
/// multiples of 1000 (to show the error path).
fn digit_sum(n: u64) -> Result<u64, String> {
    if n > 0 && n % 1000 == 0 {
        return Err(format!("refusing to process {n}"));
    }
    let mut rest = n;
    let mut sum = 0;
    while rest > 0 {
        sum += rest % 10;
        rest /= 10;
    }
    Ok(sum)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let pool = ThreadPool::new();
    println!("pool with {} workers", pool.workers());

    // A timer on the same (single) executor thread keeps ticking while the
    // stream is awaited, since awaiting it never blocks the thread.
    let ticker = tokio::spawn(async {
        let mut ticks = 0u32;
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            ticks += 1;
            if ticks % 10 == 0 {
                println!("  (executor still responsive: {ticks} ticks)");
            }
        }
    });

    // Ordered results, at most 64 inputs in flight.
    let started = Instant::now();
    let sums: Result<Vec<u64>, String> = pool
        .imap(digit_sum, 1..1000u64)
        .buffer(64)
        .into_stream()
        .try_collect()
        .await;
    let sums = sums.expect("no input in 1..1000 is rejected");
    println!(
        "digit sums of 1..1000: first {:?}, last {:?}, total {} ({:?})",
        &sums[..5],
        &sums[sums.len() - 3..],
        sums.iter().sum::<u64>(),
        started.elapsed()
    );

    // The first error in input order ends the stream; dropping the stream
    // cancels the inputs not yet started.
    let failed: Result<Vec<u64>, String> = pool
        .imap(digit_sum, 1..100_000u64)
        .buffer(64)
        .into_stream()
        .try_collect()
        .await;
    println!("over 1..100000: {:?}", failed.map(|v| v.len()));

    // Slow items still come back in input order, and the executor keeps
    // running other futures (the ticker above) meanwhile.
    let slow = pool
        .imap(
            |ms: u64| {
                std::thread::sleep(Duration::from_millis(ms));
                ms
            },
            vec![120, 30, 90, 10, 60],
        )
        .chunksize(1)
        .into_stream();
    let mut slow = std::pin::pin!(slow);
    while let Some(ms) = slow.next().await {
        println!("slept {ms} ms");
    }

    // A single task is a future too.
    let answer = pool.apply_async(|| 6 * 7).await;
    println!("apply_async awaited: {answer:?}");

    ticker.abort();
}
