//! A tiny deterministic generator (xorshift64) for the randomized attack
//! tests, with no dependency, so a failure replays from its seed.
//!
//! Invariant: the state is never 0 (xorshift would stay at 0); seeds are
//! odd or otherwise non-zero.

/// The generator; construct it with a non-zero seed: `Rng(seed)`.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
