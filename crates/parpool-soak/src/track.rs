//! Bookkeeping shared by every thread of a run: live-object counters, the
//! drop bitset, outcome classes, failures, progress and "what is running".
//!
//! Everything here is process-global, so only one [`crate::run`] may be
//! active in a process at a time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering::SeqCst};
use std::sync::{Mutex, OnceLock};

/// Kinds of tracked objects. Each has a live counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Input = 0,
    Closure = 1,
    Result = 2,
    Iter = 3,
}

pub(crate) const KIND_NAMES: [&str; 4] = ["inputs", "closures", "results", "iters"];

/// Live objects per kind (created minus dropped) in the current round.
pub(crate) static LIVE: [AtomicIsize; 4] = [const { AtomicIsize::new(0) }; 4];
/// The round whose objects the counters track; older probes are "late".
pub(crate) static ROUND: AtomicU64 = AtomicU64::new(0);
/// Probes of an earlier round dropped after that round's leak check.
pub(crate) static LATE_DROPS: AtomicU64 = AtomicU64::new(0);
/// Probes of an earlier round created after that round's leak check: not
/// counted in the current round's `LIVE` (their drop is late too).
pub(crate) static LATE_CREATES: AtomicU64 = AtomicU64::new(0);
/// Injected panics actually raised.
pub(crate) static INJECTED: AtomicU64 = AtomicU64::new(0);

/// Bumped whenever anything finishes; the watchdog looks at it.
pub(crate) static PROGRESS: AtomicU64 = AtomicU64::new(0);

pub(crate) static LOST: AtomicU64 = AtomicU64::new(0);
pub(crate) static DUPLICATED: AtomicU64 = AtomicU64::new(0);
pub(crate) static LEAKED: AtomicU64 = AtomicU64::new(0);
/// Wrong values, wrong order, unexpected panics/errors, double drops, ...
pub(crate) static OTHER: AtomicU64 = AtomicU64::new(0);
pub(crate) static ROUNDS: AtomicU64 = AtomicU64::new(0);
pub(crate) static OPS: AtomicU64 = AtomicU64::new(0);
pub(crate) static SEED: AtomicU64 = AtomicU64::new(0);
pub(crate) static ROUND_SEED: AtomicU64 = AtomicU64::new(0);

/// Ids below this are tracked in the drop bitset (double-drop detection).
const BITSET_IDS: u64 = 1 << 22;

fn bitset() -> &'static [AtomicU64] {
    static BITS: OnceLock<Box<[AtomicU64]>> = OnceLock::new();
    BITS.get_or_init(|| (0..BITSET_IDS / 64).map(|_| AtomicU64::new(0)).collect())
}

/// Features a run leaves out (`--skip`), to look past a known bug.
pub(crate) static SKIP: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Operation kinds a run is restricted to (`--ops`); empty: all.
pub(crate) static ONLY_OPS: Mutex<Vec<String>> = Mutex::new(Vec::new());

pub(crate) fn only_ops() -> Vec<String> {
    lock(&ONLY_OPS).clone()
}

pub(crate) fn skipped(feature: &str) -> bool {
    lock(&SKIP).iter().any(|f| f == feature)
}

/// The operations of the current round, for failure reports.
static ROUND_LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

pub(crate) fn log_op(entry: String) {
    let mut log = lock(&ROUND_LOG);
    if log.len() < 64 {
        log.push(entry);
    }
}

pub(crate) fn round_log() -> String {
    let log = lock(&ROUND_LOG);
    let mut s = log.join("; ");
    if log.len() >= 64 {
        s.push_str("; ...");
    }
    s
}

/// Starts tracking a new round: counters to zero, bitset cleared.
pub(crate) fn new_round(round: u64) {
    lock(&ROUND_LOG).clear();
    ROUND.store(round, SeqCst);
    for c in &LIVE {
        c.store(0, SeqCst);
    }
    for w in bitset() {
        w.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

pub(crate) fn live_counts() -> [isize; 4] {
    [0, 1, 2, 3].map(|i| LIVE[i].load(SeqCst))
}

/// A tracked object: counts itself live, and may panic in `Drop`.
pub(crate) struct Probe {
    kind: Kind,
    /// Unique within the round (used by the drop bitset).
    pid: u64,
    round: u64,
    panic_on_drop: bool,
}

impl Probe {
    /// A probe of `round`. Counted live only if `round` is the current
    /// one: a probe of an earlier round would otherwise charge the current
    /// round with an object its late drop never uncounts (a false leak).
    /// The run waits until nothing holds a round's context before the next
    /// round starts (`run_round`), so that happens only after a context
    /// leak, which is reported as one.
    pub(crate) fn new(kind: Kind, pid: u64, round: u64, panic_on_drop: bool) -> Probe {
        if round == ROUND.load(SeqCst) {
            LIVE[kind as usize].fetch_add(1, SeqCst);
        } else if LATE_CREATES.fetch_add(1, SeqCst) < 8 {
            println!(
                "soak: late create: {} #{pid} of round {round} made during round {} on thread {:?}",
                KIND_NAMES[kind as usize],
                ROUND.load(SeqCst),
                std::thread::current().name().unwrap_or("<unnamed>")
            );
        }
        Probe {
            kind,
            pid,
            round,
            panic_on_drop,
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        if self.round != ROUND.load(SeqCst) {
            // Which thread let go of it, and when, is the clue to what held
            // it (a leak report names the round).
            if LATE_DROPS.fetch_add(1, SeqCst) < 8 {
                println!(
                    "soak: late drop: {} #{} of round {} dropped during round {} on thread {:?}",
                    KIND_NAMES[self.kind as usize],
                    self.pid,
                    self.round,
                    ROUND.load(SeqCst),
                    std::thread::current().name().unwrap_or("<unnamed>")
                );
            }
            return;
        }
        LIVE[self.kind as usize].fetch_sub(1, SeqCst);
        if self.pid < BITSET_IDS {
            let mask = 1u64 << (self.pid % 64);
            let prev = bitset()[(self.pid / 64) as usize].fetch_or(mask, SeqCst);
            if prev & mask != 0 {
                fail(
                    Fail::Other,
                    "double-drop",
                    format!(
                        "{} object #{} dropped twice",
                        KIND_NAMES[self.kind as usize], self.pid
                    ),
                );
            }
        }
        // A panic while already unwinding aborts the process whatever the
        // library does, so only inject when it can be caught.
        if self.panic_on_drop && !std::thread::panicking() {
            INJECTED.fetch_add(1, SeqCst);
            panic!(
                "soak: injected panic in Drop of {} #{}",
                KIND_NAMES[self.kind as usize], self.pid
            );
        }
    }
}

/// Failure categories (the summary's columns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fail {
    Lost(u64),
    Duplicated(u64),
    Leaked(u64),
    Other,
}

struct Failures {
    printed: usize,
    by_key: BTreeMap<String, u64>,
}

static FAILURES: Mutex<Failures> = Mutex::new(Failures {
    printed: 0,
    by_key: BTreeMap::new(),
});

const MAX_PRINTED: usize = 60;
const MAX_PRINTED_PER_KEY: u64 = 2;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records a failure: counts it and prints the first few of each kind.
pub(crate) fn fail(kind: Fail, key: &str, msg: String) {
    match kind {
        Fail::Lost(n) => LOST.fetch_add(n, SeqCst),
        Fail::Duplicated(n) => DUPLICATED.fetch_add(n, SeqCst),
        Fail::Leaked(n) => LEAKED.fetch_add(n, SeqCst),
        Fail::Other => OTHER.fetch_add(1, SeqCst),
    };
    let mut f = lock(&FAILURES);
    let seen = f.by_key.entry(key.to_owned()).or_insert(0);
    *seen += 1;
    if *seen <= MAX_PRINTED_PER_KEY && f.printed < MAX_PRINTED {
        f.printed += 1;
        println!(
            "soak: FAIL [{key}] seed={} round={} round_seed={:#x}: {msg}",
            SEED.load(SeqCst),
            ROUND.load(SeqCst),
            ROUND_SEED.load(SeqCst)
        );
    }
}

/// Distinct failure keys with their counts.
pub(crate) fn failure_keys() -> Vec<(String, u64)> {
    lock(&FAILURES)
        .by_key
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

static OUTCOMES: Mutex<BTreeMap<&'static str, u64>> = Mutex::new(BTreeMap::new());

/// Counts one classified outcome.
pub(crate) fn outcome(class: &'static str) {
    *lock(&OUTCOMES).entry(class).or_insert(0) += 1;
}

pub(crate) fn outcomes() -> Vec<(&'static str, u64)> {
    lock(&OUTCOMES).iter().map(|(k, v)| (*k, *v)).collect()
}

/// What each driving thread is doing, for the hang report.
static CURRENT: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

pub(crate) fn doing(who: &str, what: String) {
    lock(&CURRENT).insert(who.to_owned(), what);
}

pub(crate) fn done(who: &str) {
    lock(&CURRENT).remove(who);
}

pub(crate) fn current() -> Vec<(String, String)> {
    // try_lock: the watchdog must not block on a thread that hangs holding it.
    match CURRENT.try_lock() {
        Ok(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Err(_) => vec![("?".into(), "(state lock busy)".into())],
    }
}

pub(crate) fn progress() {
    PROGRESS.fetch_add(1, SeqCst);
}

/// The text of a panic payload.
pub(crate) fn payload_msg(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string payload>".to_owned()
    }
}

pub(crate) fn is_injected(msg: &str) -> bool {
    msg.contains("soak: injected")
}

/// An injected panic from a `Drop` impl (not from a task or callback).
pub(crate) fn is_drop_injected(msg: &str) -> bool {
    msg.contains("soak: injected panic in Drop of")
}

/// Messages that may legitimately come out of parpool in some context.
pub(crate) fn is_known_message(msg: &str) -> bool {
    is_injected(msg)
        || msg.contains("not running")
        || msg.contains("imap stopped early")
        || msg.contains("did not complete")
}

/// Installs the silent panic hook. Panics whose message no context allows
/// (engine assertions, arithmetic overflow, ...) are recorded at their
/// origin, with location and thread; the first few also get a backtrace.
pub(crate) fn install_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = payload_msg(info.payload());
        if is_known_message(&msg) {
            return;
        }
        let loc = info
            .location()
            .map(|l| {
                // std's paths look like /rustc/<hash>/library/std/src/time.rs.
                let file = l.file();
                let file = file.find("/library/").map_or(file, |i| &file[i + 1..]);
                format!("{file}:{}", l.line())
            })
            .unwrap_or_else(|| "?".into());
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("<unnamed>").to_owned();
        let key = format!("unexpected-panic@{loc}");
        let first = !lock(&FAILURES).by_key.contains_key(&key);
        fail(
            Fail::Other,
            &key,
            format!("unexpected panic on thread '{name}' at {loc}: {msg}"),
        );
        if first {
            let bt = std::backtrace::Backtrace::force_capture().to_string();
            let frames: Vec<&str> = bt
                .lines()
                .filter(|l| l.contains("parpool") && !l.contains("track::install_hook"))
                .take(12)
                .collect();
            if !frames.is_empty() {
                println!("soak:   backtrace (parpool frames):\n{}", frames.join("\n"));
            }
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The false leak CI's soak once reported (`results=1`, `late drops=1`):
    /// a worker of round 1's pool, which nobody joined, made a result after
    /// round 2 began, and round 2 counted it live for good.
    #[test]
    fn a_probe_of_an_earlier_round_is_not_charged_to_the_current_one() {
        new_round(1);
        let own = Probe::new(Kind::Result, 0, 1, false);
        assert_eq!(live_counts(), [0, 0, 1, 0]);
        drop(own);
        assert_eq!(live_counts(), [0; 4]);
        new_round(2);
        let stale = Probe::new(Kind::Result, 1, 1, false);
        assert_eq!(live_counts(), [0; 4], "not round 2's object");
        assert_eq!(LATE_CREATES.load(SeqCst), 1);
        drop(stale);
        assert_eq!(live_counts(), [0; 4]);
        assert_eq!(LATE_DROPS.load(SeqCst), 1);
        let current = Probe::new(Kind::Input, 2, 2, false);
        assert_eq!(live_counts(), [1, 0, 0, 0]);
        drop(current);
        assert_eq!(live_counts(), [0; 4]);
    }
}
