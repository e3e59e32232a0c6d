//! All-to-all exchanges of byte messages between every pair of ranks, in
//! rounds of bounded size (each round: `MPI_Alltoall` of the sizes, then
//! `MPI_Alltoallv` of the bytes, then an `MPI_Allreduce` of "more to come").
//!
//! Invariant: rank i's `outgoing[j]` arrives as rank j's `incoming[i]`,
//! exactly, however long: a message longer than a round's share is cut
//! into pieces that arrive in order, so no single exchange nears the i32
//! count limit (millions of hard-linked names would pass 2 GiB at once). No
//! buffer handed to MPI is ever empty (each piece travels with a one-byte
//! header, so a rank with nothing to say still sends something: Open MPI
//! takes an empty `Vec`'s address for `MPI_IN_PLACE`), and a round over the
//! i32 count limit is refused with a clear error rather than truncated.

use mpi::collective::SystemOperation;
use mpi::datatype::{Partition, PartitionMut};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Count;

use super::idle;
use super::steal::fatal;

/// The bytes a rank sends in one round, to all ranks together.
pub const ROUND_BYTES: usize = 256 << 20;

/// What an exchange received, and in how many rounds.
pub struct Exchanged {
    /// `incoming[i]`: what rank i sent here.
    pub incoming: Vec<Vec<u8>>,
    /// Rounds it took (the same on every rank).
    pub rounds: u32,
}

/// Sends `outgoing[j]` to rank j and returns what each rank sent here. A
/// collective: every rank must call it, in the same order.
pub fn all_to_all(world: &SimpleCommunicator, outgoing: Vec<Vec<u8>>) -> Exchanged {
    let round = std::env::var(super::EXCHANGE_HOOK_VAR)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ROUND_BYTES);
    in_rounds(world, &outgoing, round)
}

/// [`all_to_all`] with rounds of at most `round` bytes sent per rank.
fn in_rounds(world: &SimpleCommunicator, outgoing: &[Vec<u8>], round: usize) -> Exchanged {
    let n = world.size() as usize;
    assert_eq!(outgoing.len(), n, "one message per rank");
    let share = (round / n).max(1);
    let mut sent = vec![0usize; n];
    let mut incoming = vec![Vec::new(); n];
    let mut rounds = 0;
    loop {
        let pieces: Vec<&[u8]> = outgoing
            .iter()
            .zip(&mut sent)
            .map(|(m, at)| {
                let piece = &m[*at..(*at + share).min(m.len())];
                *at += piece.len();
                piece
            })
            .collect();
        for (whole, piece) in incoming.iter_mut().zip(one_round(world, &pieces)) {
            whole.extend_from_slice(&piece);
        }
        rounds += 1;
        let more_here = outgoing.iter().zip(&sent).any(|(m, &at)| at < m.len()) as u8;
        let mut more = 0u8;
        idle::wait_for(|scope| {
            world.immediate_all_reduce_into(scope, &more_here, &mut more, SystemOperation::max())
        });
        if more == 0 {
            return Exchanged { incoming, rounds };
        }
    }
}

/// One round: `pieces[j]` to rank j, each with its one-byte header.
fn one_round(world: &SimpleCommunicator, pieces: &[&[u8]]) -> Vec<Vec<u8>> {
    let n = pieces.len();
    let mut send = Vec::new();
    let mut counts: Vec<Count> = Vec::with_capacity(n);
    let mut displs: Vec<Count> = Vec::with_capacity(n);
    for m in pieces {
        let len = m.len() + 1;
        if send.len() + len > Count::MAX as usize {
            fatal(world, "an exchange round over 2 GiB");
        }
        displs.push(send.len() as Count);
        counts.push(len as Count);
        send.push(0u8);
        send.extend_from_slice(m);
    }
    let mut recv_counts: Vec<Count> = vec![0; n];
    // The first call of a round: where a rank that finished early waits.
    idle::wait_for(|scope| {
        world.immediate_all_to_all_into(scope, &counts[..], &mut recv_counts[..])
    });
    let mut recv_displs: Vec<Count> = Vec::with_capacity(n);
    let mut total: usize = 0;
    for &c in &recv_counts {
        if total + c as usize > Count::MAX as usize {
            fatal(world, "an exchange round over 2 GiB");
        }
        recv_displs.push(total as Count);
        total += c as usize;
    }
    let mut recv = vec![0u8; total];
    {
        let sendp = Partition::new(&send[..], &counts[..], &displs[..]);
        let mut recvp = PartitionMut::new(&mut recv[..], &recv_counts[..], &recv_displs[..]);
        idle::wait_for(|scope| world.immediate_all_to_all_varcount_into(scope, &sendp, &mut recvp));
    }
    recv_counts
        .iter()
        .zip(&recv_displs)
        .map(|(&c, &d)| recv[d as usize + 1..(d + c) as usize].to_vec())
        .collect()
}
