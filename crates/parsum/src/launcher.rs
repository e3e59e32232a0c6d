//! What an MPI launcher (`mpirun`, `srun`, Hydra) tells a process through
//! its environment before MPI starts: that it was launched, its rank, and
//! the number of ranks. Read by every build: the MPI build runs as one rank
//! of the job (`cluster/`), and the default build refuses to run as one of
//! several ranks (each would hash the whole tree and print it again).
//!
//! Invariant: nothing here starts or links MPI; without any of these
//! variables a process is not under a launcher and every answer is "no".

/// Variables that MPI launchers set for their processes: Open MPI's
/// `mpirun`, MPICH's Hydra (`PMI_SIZE`), and PMIx launchers (Slurm's
/// `srun --mpi=pmix`, Open MPI 5).
pub const LAUNCHER_VARS: [&str; 3] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"];

/// Variables that hold this process's rank, set by the same launchers.
pub const RANK_VARS: [&str; 3] = ["OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"];

/// Variables that hold the number of ranks (PMIx alone sets none).
pub const SIZE_VARS: [&str; 2] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"];

/// Whether a launcher started this process (see [`LAUNCHER_VARS`]).
pub fn launched() -> bool {
    LAUNCHER_VARS.iter().any(|v| std::env::var_os(v).is_some())
}

/// This process's rank as its launcher set it; `None` without a launcher
/// or with an unreadable value.
pub fn rank() -> Option<u32> {
    first_number(&RANK_VARS)
}

/// The number of ranks as the launcher set it; `None` where unknown.
pub fn size() -> Option<u32> {
    first_number(&SIZE_VARS)
}

/// Whether this process is a rank other than 0: such a rank prints no
/// help, version or usage error, which rank 0 prints once for the job.
pub fn silent_rank() -> bool {
    rank().is_some_and(|r| r != 0)
}

fn first_number(vars: &[&str]) -> Option<u32> {
    vars.iter()
        .find_map(|v| std::env::var(v).ok()?.trim().parse().ok())
}
