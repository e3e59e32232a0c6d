//! One all-to-all exchange of byte messages between every pair of ranks
//! (`MPI_Alltoall` of the sizes, then `MPI_Alltoallv` of the bytes).
//!
//! Invariant: rank i's `outgoing[j]` arrives as rank j's `incoming[i]`,
//! exactly. No buffer handed to MPI is ever empty (each message travels
//! with a one-byte header, so a rank with nothing to say still sends
//! something: Open MPI takes an empty `Vec`'s address for `MPI_IN_PLACE`),
//! and a total over the i32 count limit is refused with a clear error
//! rather than truncated.

use mpi::datatype::{Partition, PartitionMut};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Count;

use super::steal::fatal;

/// Sends `outgoing[j]` to rank j and returns what each rank sent here. A
/// collective: every rank must call it, in the same order.
pub fn all_to_all(world: &SimpleCommunicator, outgoing: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let n = world.size() as usize;
    assert_eq!(outgoing.len(), n, "one message per rank");
    let mut send = Vec::new();
    let mut counts: Vec<Count> = Vec::with_capacity(n);
    let mut displs: Vec<Count> = Vec::with_capacity(n);
    for m in &outgoing {
        let len = m.len() + 1;
        if send.len() + len > Count::MAX as usize {
            fatal(
                world,
                "an exchange over 2 GiB from one rank (MPI counts are 32-bit)",
            );
        }
        displs.push(send.len() as Count);
        counts.push(len as Count);
        send.push(0u8);
        send.extend_from_slice(m);
    }
    let mut recv_counts: Vec<Count> = vec![0; n];
    world.all_to_all_into(&counts[..], &mut recv_counts[..]);
    let mut recv_displs: Vec<Count> = Vec::with_capacity(n);
    let mut total: usize = 0;
    for &c in &recv_counts {
        if total + c as usize > Count::MAX as usize {
            fatal(
                world,
                "an exchange over 2 GiB from one rank (MPI counts are 32-bit)",
            );
        }
        recv_displs.push(total as Count);
        total += c as usize;
    }
    let mut recv = vec![0u8; total];
    {
        let sendp = Partition::new(&send[..], &counts[..], &displs[..]);
        let mut recvp = PartitionMut::new(&mut recv[..], &recv_counts[..], &recv_displs[..]);
        world.all_to_all_varcount_into(&sendp, &mut recvp);
    }
    recv_counts
        .iter()
        .zip(&recv_displs)
        .map(|(&c, &d)| recv[d as usize + 1..(d + c) as usize].to_vec())
        .collect()
}
