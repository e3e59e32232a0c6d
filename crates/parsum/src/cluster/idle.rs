//! How a rank waits for other ranks: with naps, never spinning.
//!
//! MPI's blocking calls busy-poll: a rank in `MPI_Bcast`, `MPI_Recv`, a
//! rendezvous `MPI_Send` or a collective takes a whole CPU until its peers
//! arrive. Ranks wait that way for as long as rank 0 works alone (reading a
//! manifest for `-c` or `--audit`, all of `--update` and `--verify`,
//! writing the merged output), and rank 0 waits for the slowest rank's
//! verdicts; on a node they share, the spinning took CPUs from the hashers
//! (`mpirun -np 3` on 2 cores ran rank 0 beside two busy loops: 3.5 s of
//! CPU for a 2 s wait).
//!
//! Invariant: every wait of a rank on another outside the work-stealing
//! loop (which naps on its own, `steal.rs`) goes through this module. Each
//! starts the non-blocking form of the call ([`wait_for`], or a probe for
//! a receive) and tests it with naps that double from [`FIRST_NAP`] to
//! [`MAX_NAP`], so a waiting rank costs a few hundred wake-ups a second at
//! most and learns of the peer at most [`MAX_NAP`] late. Only the main
//! thread calls it (MPI is funneled).

use std::time::Duration;

use mpi::datatype::{Buffer, BufferMut};
use mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
use mpi::request::{self, LocalScope, Request, Scope};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Tag;

/// The first nap: waits that end at once (peers arriving together, the
/// common case) cost a test or two.
pub const FIRST_NAP: Duration = Duration::from_micros(50);
/// The longest nap: how late a rank that waited long learns of its peer.
pub const MAX_NAP: Duration = Duration::from_millis(10);

/// Naps that double from [`FIRST_NAP`] up to [`MAX_NAP`].
struct Naps(Duration);

impl Naps {
    fn new() -> Self {
        Naps(FIRST_NAP)
    }

    fn nap(&mut self) {
        std::thread::sleep(self.0);
        self.0 = (self.0 * 2).min(MAX_NAP);
    }
}

/// Starts a non-blocking call in a request scope of its own (`start` is
/// given the scope) and waits for it to complete, napping between tests:
/// the blocking form of the call, without the spinning. Every collective
/// and send outside the work-stealing loop waits here.
pub fn wait_for<'a, D: ?Sized + 'a>(
    start: impl for<'s> FnOnce(&'s LocalScope<'a>) -> Request<'a, D, &'s LocalScope<'a>>,
) {
    request::scope(|scope| complete(start(scope)));
}

/// Waits for `pending` to complete, napping between tests.
fn complete<'a, D: ?Sized, S: Scope<'a>>(mut pending: Request<'a, D, S>) {
    let mut naps = Naps::new();
    loop {
        match pending.test() {
            Ok(_) => return,
            Err(again) => pending = again,
        }
        naps.nap();
    }
}

/// `MPI_Bcast` of `buf` from rank 0 to every rank, waiting with naps.
pub fn broadcast_from_root<B: BufferMut + ?Sized>(world: &SimpleCommunicator, buf: &mut B) {
    wait_for(|scope| {
        world
            .process_at_rank(0)
            .immediate_broadcast_into(scope, buf)
    });
}

/// Receives the next message tagged `tag` from `from`, waiting with naps.
pub fn receive_vec<S: Source>(from: &S, tag: Tag) -> Vec<u8> {
    let mut naps = Naps::new();
    loop {
        if let Some(probed) = from.immediate_matched_probe_with_tag(tag) {
            return probed.matched_receive_vec::<u8>().0;
        }
        naps.nap();
    }
}

/// Sends `buf` tagged `tag` to `to`, waiting with naps until it is sent
/// (a large message waits for the receiver to take it).
pub fn send<D: Destination, B: Buffer + ?Sized>(to: &D, buf: &B, tag: Tag) {
    wait_for(|scope| to.immediate_send_with_tag(scope, buf, tag));
}
