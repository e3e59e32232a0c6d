//! The optional Python row for W1: `multiprocessing.pool.ThreadPool.map`
//! over the same range, timed inside a `python3` subprocess (interpreter
//! start-up is not counted). Skipped quietly when there is no `python3`.

use std::process::Command;
use std::time::Duration;

pub const ROW: &str = "Python ThreadPool.map (python3 subprocess)";

const SCRIPT: &str = r#"
import sys, time
from multiprocessing.pool import ThreadPool
n, reps, workers = (int(a) for a in sys.argv[1:4])
M = (1 << 64) - 1
def f(x):
    y = (x * 0x9E3779B97F4A7C15) & M
    return y ^ (y >> 29)
with ThreadPool(workers) as pool:
    pool.map(f, range(1000))
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        out = pool.map(f, range(n))
        times.append(time.perf_counter() - t)
        assert len(out) == n and out[7] == f(7)
print(" ".join(repr(t) for t in times))
"#;

/// Per-repetition times of the Python row, or `None` if `python3` is
/// missing or failed.
pub fn w1(n: u64, reps: usize, workers: usize) -> Option<Vec<Duration>> {
    let out = Command::new("python3")
        .args(["-c", SCRIPT])
        .args([n.to_string(), reps.to_string(), workers.to_string()])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "python row skipped: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|s| s.parse::<f64>().ok().map(Duration::from_secs_f64))
        .collect()
}
