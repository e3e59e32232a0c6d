//! A round's shared context: the pool, the fault plan and the tracked types.

use crate::track::{self, Kind, Probe};
use parpool::{PanicPolicy, ThreadPool};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, Weak};

/// splitmix64 finalizer: a good 64-bit mix.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The function every mapped item goes through.
pub(crate) fn fval(v: u64) -> u64 {
    mix(v ^ 0x5EED).wrapping_add(1)
}

/// Where a fault can be injected.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Hook {
    Task = 1,
    MapFn,
    IterNext,
    OnSuccess,
    OnError,
    DropInput,
    DropClosure,
    DropResult,
    DropIter,
    TryErr,
    Slow,
}

pub(crate) struct Ctx {
    pub round: u64,
    pub seed: u64,
    /// Fault probability, per million, for each hook call.
    pub rate: u64,
    pub policy: PanicPolicy,
    pub workers: usize,
    pub weak: Weak<ThreadPool>,
    /// The round's own strong reference (taken by a "drop" action or at the end).
    pub strong: Mutex<Option<Arc<ThreadPool>>>,
    /// `terminate()` was (or is about to be) called on the pool.
    pub terminate_requested: AtomicBool,
    next_id: AtomicU64,
}

/// An input item: a unique id and a value; tracked.
pub(crate) struct Item {
    pub id: u64,
    pub val: u64,
    _probe: Probe,
}

impl Item {
    /// The id and value; drops the item (its `Drop` may panic) first, so
    /// that no panicking local outlives a computed result: Rust leaks a
    /// function's return value when a local's `Drop` panics after it was
    /// computed (rust-lang/rust#47949), which would look like an engine leak.
    pub(crate) fn into_parts(self) -> (u64, u64) {
        let parts = (self.id, self.val);
        drop(self);
        parts
    }
}

/// A result: the input's id and f(input value); tracked.
pub(crate) struct Out {
    pub id: u64,
    pub val: u64,
    _probe: Probe,
}

impl Ctx {
    pub(crate) fn new(
        round: u64,
        seed: u64,
        rate: u64,
        policy: PanicPolicy,
        workers: usize,
        pool: Arc<ThreadPool>,
    ) -> Ctx {
        Ctx {
            round,
            seed,
            rate,
            policy,
            workers,
            weak: Arc::downgrade(&pool),
            strong: Mutex::new(Some(pool)),
            terminate_requested: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
        }
    }

    /// Reserves `n` consecutive ids; returns the first.
    pub(crate) fn ids(&self, n: u64) -> u64 {
        self.next_id.fetch_add(n.max(1), SeqCst)
    }

    pub(crate) fn roll(&self, hook: Hook, key: u64, rate_per_million: u64) -> bool {
        rate_per_million > 0
            && mix(self.seed ^ mix((hook as u64).wrapping_mul(0x1000_0000_01B3) ^ key)) % 1_000_000
                < rate_per_million
    }

    pub(crate) fn fault(&self, hook: Hook, key: u64) -> bool {
        self.roll(hook, key, self.rate)
    }

    /// Panics with a recognizable payload if the plan says so.
    pub(crate) fn inject(&self, hook: Hook, key: u64) {
        if self.fault(hook, key) {
            track::INJECTED.fetch_add(1, SeqCst);
            panic!("soak: injected panic in {hook:?} #{key}");
        }
    }

    pub(crate) fn probe(&self, kind: Kind, key: u64) -> Probe {
        let hook = match kind {
            Kind::Input => Hook::DropInput,
            Kind::Closure => Hook::DropClosure,
            Kind::Result => Hook::DropResult,
            Kind::Iter => Hook::DropIter,
        };
        let pid = self.ids(1);
        let panics = !track::skipped("drop-faults") && self.fault(hook, key ^ (pid << 32));
        Probe::new(kind, pid, self.round, panics)
    }

    pub(crate) fn closure_probe(&self) -> Probe {
        let k = self.ids(1);
        self.probe(Kind::Closure, k)
    }

    pub(crate) fn input_val(&self, id: u64) -> u64 {
        mix(id ^ self.seed)
    }

    pub(crate) fn item(&self, id: u64) -> Item {
        Item {
            id,
            val: self.input_val(id),
            _probe: self.probe(Kind::Input, id),
        }
    }

    /// Items with ids `base..base+n`.
    pub(crate) fn items(&self, base: u64, n: usize) -> Vec<Item> {
        (0..n as u64).map(|i| self.item(base + i)).collect()
    }

    pub(crate) fn out(&self, id: u64, val: u64) -> Out {
        Out {
            id,
            val,
            _probe: self.probe(Kind::Result, id),
        }
    }

    /// The mapped function's body: fault, maybe a short stall, f(val).
    pub(crate) fn work(&self, id: u64, val: u64) -> Out {
        self.inject(Hook::MapFn, id);
        if self.roll(Hook::Slow, id, 20_000) {
            std::thread::sleep(std::time::Duration::from_micros(mix(id) % 300));
        }
        let _ = parpool::cancelled();
        self.out(id, fval(val))
    }

    /// Whether a `Cancelled` outcome is legitimate in this round.
    pub(crate) fn cancel_ok(&self) -> bool {
        self.terminate_requested.load(SeqCst) || self.policy == PanicPolicy::Terminate
    }
}

/// An input iterator for `imap` whose `next()` and `Drop` may panic.
pub(crate) struct FaultIter {
    pub ctx: Arc<Ctx>,
    pub base: u64,
    pub n: u64,
    pub pos: u64,
    _probe: Probe,
}

impl FaultIter {
    pub(crate) fn new(ctx: &Arc<Ctx>, base: u64, n: u64) -> FaultIter {
        FaultIter {
            _probe: ctx.probe(Kind::Iter, base),
            ctx: Arc::clone(ctx),
            base,
            n,
            pos: 0,
        }
    }
}

impl Iterator for FaultIter {
    type Item = Item;
    fn next(&mut self) -> Option<Item> {
        if self.pos >= self.n {
            return None;
        }
        let id = self.base + self.pos;
        self.pos += 1;
        self.ctx.inject(Hook::IterNext, id);
        Some(self.ctx.item(id))
    }
}
