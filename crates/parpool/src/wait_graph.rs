//! Wait cycles across threads: the one place they are found.
//!
//! Task A, on one worker, waits for task B's result while B, on another,
//! waits for A's: neither can ever finish. A thread waiting for its own
//! task is refused where it waits (`async_result::own_work`); this module
//! finds the same dead end when it spans threads, and the wait that closes
//! the cycle is refused with a clear message instead of hanging.
//!
//! **Edges.** A thread that blocks, with no time limit, for one task's
//! result (an [`AsyncResult`](crate::AsyncResult)'s `get` or `wait`)
//! publishes, for as long as it is inside that block and no longer: the
//! task it waits for, and the tasks it is in the middle of (its running
//! tasks at every inlined depth, and the tasks whose callbacks it runs:
//! [`own_work_marks`](crate::async_result::own_work_marks)). A thread in
//! the middle of nothing publishes nothing: it cannot be part of a cycle,
//! so plain threads waiting for their results (W4, W7) never take the
//! lock. Publishing walks the edges: the thread running the awaited task,
//! the task that thread waits for, and so on; reaching the publishing
//! thread is a cycle.
//!
//! **Invariant.** A published thread is inside its block: it runs no user
//! code until it has taken the lock to unpublish. So while the lock is
//! held, a task in a published thread's list cannot finish (its body, or
//! its callbacks, are suspended on that thread, and nothing else finishes
//! a started task: `cancel` only asks), and no published edge can go
//! away. A cycle seen under the lock is therefore one that no thread in
//! it can ever leave: no false alarm is possible, whatever the timing. A
//! cycle is found by whichever of its threads publishes last.
//!
//! **Not covered** (such cycles still hang, as they would in Python):
//! waits for many things at once (a scope's end, a map, an imap's
//! consumer, `as_completed`), timed waits (they end), a poll by an
//! executor, and cycles through anything that is not a pool task (a
//! channel, a lock).

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Every published edge, and who runs what. A task is usually run by one
/// thread, but a map's chunks share their map's token, so several threads
/// may be in the middle of one: any of them blocked keeps it from
/// finishing.
struct Graph {
    /// Who waits for which task, while in the middle of which tasks.
    waiting: BTreeMap<u64, (usize, Vec<usize>)>,
    /// The published threads in the middle of each task.
    runners: BTreeMap<usize, Vec<u64>>,
}

impl Graph {
    /// `Some(threads)` if following the edges from `awaited` (its runner's
    /// awaited task, and so on) comes back to a task in `mine`. Each step
    /// looks up one map, so a walk costs its length, not the graph's size.
    fn cycle_through(&self, mut awaited: usize, mine: &[usize]) -> Option<usize> {
        // Each step goes to another published thread, so a walk longer than
        // the graph has gone round a cycle that does not pass through here.
        for threads in 1..=self.waiting.len() {
            let runner = self.runners.get(&awaited)?.first()?;
            let (waits, _) = &self.waiting[runner];
            if mine.contains(waits) {
                return Some(threads + 1);
            }
            awaited = *waits;
        }
        None
    }

    fn publish(&mut self, who: u64, waits: usize, runs: Vec<usize>) {
        for &task in &runs {
            self.runners.entry(task).or_default().push(who);
        }
        self.waiting.insert(who, (waits, runs));
    }

    fn unpublish(&mut self, who: u64) {
        let Some((_, runs)) = self.waiting.remove(&who) else {
            return;
        };
        for task in runs {
            if let Some(by) = self.runners.get_mut(&task) {
                by.retain(|&w| w != who);
                if by.is_empty() {
                    self.runners.remove(&task);
                }
            }
        }
    }
}

/// Held only to publish, unpublish or walk: never while anything blocks.
static GRAPH: Mutex<Graph> = Mutex::new(Graph {
    waiting: BTreeMap::new(),
    runners: BTreeMap::new(),
});

fn graph() -> std::sync::MutexGuard<'static, Graph> {
    GRAPH.lock().unwrap_or_else(|e| e.into_inner())
}

/// A published edge, unpublished when dropped (before the waiting thread
/// runs anything else).
pub(crate) struct Edge(Option<u64>);

impl Drop for Edge {
    fn drop(&mut self) {
        if let Some(who) = self.0 {
            graph().unpublish(who);
        }
    }
}

/// A wait cycle: how many threads it spans (the one that found it
/// included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cycle(pub(crate) usize);

/// Refuses the wait that closed `cycle` ([`crate::panic::refuse`]): panics,
/// except on a thread already unwinding, where it returns and the wait
/// gives up. The task whose wait panics fails, which frees the others.
#[track_caller]
pub(crate) fn refuse(cycle: Cycle) {
    crate::panic::refuse(format_args!(
        "parpool: a wait cycle across {} threads: this thread's task waited for a task that \
         waits, on another thread, for this thread's task (directly or through others); none \
         of them could ever finish, so this wait panics instead of hanging",
        cycle.0
    ));
}

/// Publishes that this thread is about to block, with no time limit, for
/// the task whose slot is at `awaited`. Returns the edge to drop once the
/// block returns, or the cycle it closes (then nothing stays published).
pub(crate) fn block_for(awaited: usize) -> Result<Edge, Cycle> {
    let runs = crate::async_result::own_work_marks();
    if runs.is_empty() {
        return Ok(Edge(None));
    }
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let who = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut g = graph();
    if let Some(threads) = g.cycle_through(awaited, &runs) {
        return Err(Cycle(threads));
    }
    g.publish(who, awaited, runs);
    Ok(Edge(Some(who)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph_of(entries: &[(u64, usize, &[usize])]) -> Graph {
        let mut g = Graph {
            waiting: BTreeMap::new(),
            runners: BTreeMap::new(),
        };
        for &(who, waits, runs) in entries {
            g.publish(who, waits, runs.to_vec());
        }
        g
    }

    #[test]
    fn a_walk_finds_a_cycle_back_to_the_walker_and_nothing_else() {
        // Thread 1 runs 10 and waits for 20; thread 2 runs 20, 21 and waits 30.
        let one = graph_of(&[(1, 20, &[10])]);
        // Waiting for 10 while running 20: through thread 1, back to me.
        assert_eq!(one.cycle_through(10, &[20]), Some(2));
        let g = graph_of(&[(1, 20, &[10]), (2, 30, &[20, 21])]);
        // Waiting for 10 while running 30: 10 -> thread 1 -> 20 -> thread 2
        // -> 30, mine.
        assert_eq!(g.cycle_through(10, &[30]), Some(3));
        // Nobody published runs 99; a runner that waits for a task nobody
        // published runs: no cycle.
        assert_eq!(g.cycle_through(99, &[30]), None);
        assert_eq!(g.cycle_through(10, &[40]), None);
    }

    #[test]
    fn a_cycle_among_others_does_not_loop_the_walk() {
        // Threads 1 and 2 wait for each other's tasks (not through me).
        let g = graph_of(&[(1, 20, &[10]), (2, 10, &[20])]);
        assert_eq!(g.cycle_through(10, &[30]), None);
    }

    #[test]
    fn unpublishing_one_runner_of_a_shared_task_keeps_the_other() {
        // Threads 1 and 2 both run chunks of 10 (a map's shared token).
        let mut g = graph_of(&[(1, 20, &[10]), (2, 30, &[10])]);
        g.unpublish(1);
        assert_eq!(g.runners[&10], [2]);
        assert_eq!(g.cycle_through(10, &[30]), Some(2));
        g.unpublish(2);
        assert!(g.runners.is_empty() && g.waiting.is_empty());
        // Unpublishing twice is harmless.
        g.unpublish(2);
    }
}
