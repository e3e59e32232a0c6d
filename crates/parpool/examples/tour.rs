//! The README's tour of parpool, runnable: `cargo run -p parpool --example tour`.

use parpool::{ThreadPool, WaitFor};
use std::time::Duration;

fn main() {
    let pool = ThreadPool::new();

    // The example from the article that started the project: 2 4 6 8 10.
    for result in pool.imap(|n| n * 2, &[1, 2, 3, 4, 5]) {
        println!("{}", result);
    }

    // map: blocking, ordered, may borrow from the stack.
    let words = vec!["apple", "banana", "cherry"];
    println!("lengths: {:?}", pool.map(|w| w.len(), &words));

    // imap over an endless input runs in constant memory.
    let squares: Vec<u64> = pool.imap(|n: u64| n * n, 0..).take(5).collect();
    println!("first squares: {squares:?}");

    // apply_async with a timeout, and a panicking task reported as an error.
    let mut answer = pool.apply_async(|| 6 * 7);
    println!("answer: {:?}", answer.get_timeout(Duration::from_secs(5)));
    let failed = pool.apply_async(|| -> u8 { panic!("bad row") });
    println!("failed task: {:?}", failed.get());

    // try_map stops early and reports the earliest error.
    println!(
        "parsed: {:?}",
        pool.try_map(|s: &&str| s.parse::<i32>(), &["1", "x", "3"])
    );

    // Waiting on many, as concurrent.futures does.
    let handles: Vec<_> = [30u64, 10, 20]
        .into_iter()
        .map(|ms| {
            pool.apply_async(move || {
                std::thread::sleep(Duration::from_millis(ms));
                ms
            })
        })
        .collect();
    let (done, pending) = parpool::wait(handles, None, WaitFor::FirstCompleted);
    println!(
        "first done: {:?}, still pending: {}",
        done[0].ready(),
        pending.len()
    );

    println!("{:?}", pool.stats());
    pool.close();
    pool.join();
}
