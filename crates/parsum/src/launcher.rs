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

/// How long a silent rank with a usage error waits for rank 0 to say it
/// and end the job, unless [`GRACE_HOOK_VAR`] sets it in milliseconds.
pub const SILENT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Test hook: the silent rank's grace in milliseconds.
pub const GRACE_HOOK_VAR: &str = "PARSUM_TEST_SILENT_GRACE_MS";

/// Ends a silent rank's usage error. Its exit status must not come first:
/// a launcher such as `mpirun` aborts the whole job on the first failing
/// rank, and a rank that failed at once could kill rank 0 before rank 0
/// said the error. So the rank waits [`SILENT_GRACE`]; normally rank 0
/// speaks and fails meanwhile, and the launcher ends this rank. If it is
/// still alive, the error was its own (rank 0 did not share it, say an
/// argument that names something only this node lacks, or a launcher that
/// does not abort the job), and it says it with its rank. Ranks past 1 wait
/// a little longer each (up to 2 s more): if rank 0 started late, rank 1
/// speaks first and the launcher ends the others before they repeat it.
pub fn silent_rank_fails(error: &str) {
    let rank = rank().unwrap_or(0);
    let grace = std::env::var(GRACE_HOOK_VAR)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map_or(SILENT_GRACE, std::time::Duration::from_millis);
    let stagger = std::time::Duration::from_millis(250) * rank.saturating_sub(1).min(8);
    std::thread::sleep(grace + stagger);
    let error = error.trim_end();
    let error = error.strip_prefix("parsum: ").unwrap_or(error);
    crate::progress::message(&format!("parsum: rank {rank}: {error}"));
}

fn first_number(vars: &[&str]) -> Option<u32> {
    vars.iter()
        .find_map(|v| std::env::var(v).ok()?.trim().parse().ok())
}
