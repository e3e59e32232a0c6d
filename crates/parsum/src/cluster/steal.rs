//! The distributed walk: work stealing between ranks, and the detection of
//! its end (Dijkstra–Safra token ring). The protocol is described in prose
//! in docs/many-nodes.md ("The protocol").
//!
//! Each rank lists directories and feeds file batches to its hasher from
//! its own [`Queue`]. A rank whose queue is empty asks a random other rank
//! for work (REQUEST) and waits for the answer; the victim answers WORK
//! (half of its queue, [`Queue::split`]) or NOWORK. Only this thread calls
//! MPI (funneled).
//!
//! Invariant (termination): rank 0 declares the walk over only when every
//! queue is empty and no WORK message is in flight. Safra's algorithm
//! proves it: each rank counts WORK messages sent minus received, turns
//! black when it receives one, and forwards the token only while passive
//! (queue empty), adding its count and its colour; a white token that
//! returns to a white, passive rank 0 with a total of zero means that no
//! rank received work since it passed the token and no work is in flight.
//! REQUEST and NOWORK carry no work, so they need no count. After DONE,
//! every REQUEST still unanswered is answered NOWORK (the ranks exchange
//! how many they sent each other), so no message is left unreceived.

use std::time::Duration;

use mpi::point_to_point::MatchedReceiveVec;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use super::devmap::DevMap;
use super::hasher::LocalHasher;
use super::record::Record;
use super::wire::{Dec, Enc};
use super::work::{list, FileTask, Queue};
use crate::progress::message;
use crate::walk::WalkOpts;

pub(super) const TAG_REQUEST: i32 = 1;
pub(super) const TAG_WORK: i32 = 2;
pub(super) const TAG_NOWORK: i32 = 3;
pub(super) const TAG_TOKEN: i32 = 4;
pub(super) const TAG_DONE: i32 = 5;

/// Longest nap of an idle rank between two attempts.
const MAX_NAP: Duration = Duration::from_millis(2);

/// Safra's colours: black means "received work since the token passed".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Colour {
    White,
    Black,
}

/// The termination token: its colour and the sum of the counts so far.
#[derive(Debug, Clone, Copy)]
struct Token {
    colour: Colour,
    count: i64,
}

impl Token {
    fn encode(self) -> [u8; 9] {
        let mut b = [0u8; 9];
        b[0] = (self.colour == Colour::Black) as u8;
        b[1..].copy_from_slice(&self.count.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Token {
        assert_eq!(b.len(), 9, "malformed token");
        Token {
            colour: if b[0] == 1 {
                Colour::Black
            } else {
                Colour::White
            },
            count: i64::from_le_bytes(b[1..].try_into().expect("8 bytes")),
        }
    }
}

/// What a rank did, for `-v` (the balance between ranks).
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Files given to this rank's hasher, and their bytes.
    pub files: u64,
    pub bytes: u64,
    /// Directories listed.
    pub dirs: u64,
    /// WORK messages received.
    pub steals: u64,
    /// REQUESTs sent.
    pub requests: u64,
}

/// What a rank has when the walk is over.
pub struct Walked {
    /// The walk's notes (skips, errors).
    pub notes: Vec<Record>,
    /// Names of multiply-linked files, for `links.rs`.
    pub links: Vec<FileTask>,
    /// The hasher, still finishing its last batches.
    pub hasher: LocalHasher,
    /// What this rank did.
    pub stats: Stats,
}

/// One rank's side of the walk.
pub struct Walk<'a> {
    world: &'a SimpleCommunicator,
    rank: i32,
    size: i32,
    opts: &'a WalkOpts,
    queue: Queue,
    hasher: LocalHasher,
    notes: Vec<Record>,
    /// Names of files with more than one link, hashed after the walk.
    links: Vec<FileTask>,
    /// Safra: WORK messages sent minus received, and this rank's colour.
    count: i64,
    colour: Colour,
    /// The token, while this rank holds it.
    token: Option<Token>,
    /// Rank 0: a token is going round.
    token_out: bool,
    /// The rank a REQUEST is outstanding to.
    waiting: Option<i32>,
    requests_sent: Vec<i32>,
    requests_received: Vec<i32>,
    done: bool,
    nap: Duration,
    /// File batches queued beyond which no directory is listed.
    files_high: usize,
    rng: u64,
    /// Other ranks' device numbers, translated.
    devs: DevMap,
    /// What this rank did.
    pub stats: Stats,
}

/// Never send an empty buffer: Open MPI takes an empty `Vec`'s pointer
/// for `MPI_IN_PLACE` (the first trap).
const ONE: [u8; 1] = [1];

impl<'a> Walk<'a> {
    /// A rank's walk, starting from `queue` (rank 0: the PATH arguments),
    /// with at most `in_flight` batches in `hasher`.
    pub fn new(
        world: &'a SimpleCommunicator,
        opts: &'a WalkOpts,
        queue: Queue,
        hasher: LocalHasher,
        in_flight: usize,
    ) -> Walk<'a> {
        let (rank, size) = (world.rank(), world.size());
        Walk {
            world,
            rank,
            size,
            opts,
            queue,
            hasher,
            notes: Vec::new(),
            links: Vec::new(),
            count: 0,
            colour: Colour::White,
            token: None,
            token_out: false,
            waiting: None,
            requests_sent: vec![0; size as usize],
            requests_received: vec![0; size as usize],
            done: false,
            nap: Duration::from_micros(50),
            files_high: in_flight.max(16),
            // Any odd seed differing per rank.
            rng: 0x9E37_79B9_7F4A_7C15 ^ ((rank as u64) << 1 | 1),
            devs: DevMap::default(),
            stats: Stats::default(),
        }
    }

    /// Runs the walk until every rank is done.
    pub fn run(mut self) -> Walked {
        loop {
            self.service();
            if self.done {
                break;
            }
            if !self.queue.is_empty() {
                self.step();
                continue;
            }
            // Passive: pass the token on, then look for work.
            self.pass_token();
            if self.done {
                break;
            }
            if self.waiting.is_none() && self.size > 1 {
                self.request();
            } else {
                self.idle();
            }
        }
        self.close();
        Walked {
            notes: self.notes,
            links: self.links,
            hasher: self.hasher,
            stats: self.stats,
        }
    }

    /// One piece of local work: feed the hasher, or list a directory.
    ///
    /// Listing is much faster than hashing, so a directory is listed only
    /// while fewer than [`Walk::files_high`] file batches wait: the queue
    /// (and memory) stays bounded by the widest directories, as in the
    /// single-process walk, not by the tree. Thieves can still take the
    /// directories.
    fn step(&mut self) {
        if self.hasher.has_room() {
            if let Some(batch) = self.queue.files.pop_back() {
                // Names of multiply-linked files wait for `links.rs`.
                let (links, batch): (Vec<_>, Vec<_>) =
                    batch.into_iter().partition(|f| f.stat.nlink > 1);
                self.links.extend(links);
                self.stats.files += batch.len() as u64;
                self.stats.bytes += batch.iter().map(|f| f.stat.size).sum::<u64>();
                if !batch.is_empty() {
                    self.hasher.send(batch);
                }
                return;
            }
        }
        if self.queue.files.len() >= self.files_high {
            self.hasher.wait(Duration::from_millis(1));
            return;
        }
        if let Some(dir) = self.queue.dirs.pop_back() {
            self.stats.dirs += 1;
            let l = list(dir, self.opts);
            self.notes.extend(l.notes);
            self.queue.extend(l.dirs, l.files);
            return;
        }
        // Only file batches, and the hasher is full: wait for room while
        // staying responsive to thieves.
        self.hasher.wait(Duration::from_millis(1));
    }

    /// Receives and handles every message waiting.
    fn service(&mut self) {
        while let Some(probed) = self.world.any_process().immediate_matched_probe() {
            let (buf, status) = probed.matched_receive_vec::<u8>();
            let from = status.source_rank();
            match status.tag() {
                TAG_REQUEST => {
                    self.requests_received[from as usize] += 1;
                    self.answer(from);
                }
                TAG_WORK => {
                    let mut got = Queue::decode(&mut Dec::new(&buf)).unwrap_or_else(|e| {
                        fatal(self.world, &format!("work from rank {from}: {e}"))
                    });
                    // Listed on another node: its device numbers are that
                    // node's (NFS clients number file systems differently).
                    self.devs.localise_queue(from, &mut got);
                    self.count -= 1;
                    self.colour = Colour::Black;
                    self.stats.steals += 1;
                    self.queue.dirs.extend(got.dirs);
                    self.queue.files.extend(got.files);
                    self.waiting = None;
                    self.nap = Duration::from_micros(50);
                }
                TAG_NOWORK => {
                    self.waiting = None;
                    self.nap = (self.nap * 2).min(MAX_NAP);
                }
                TAG_TOKEN => self.token = Some(Token::decode(&buf)),
                TAG_DONE => self.done = true,
                t => fatal(
                    self.world,
                    &format!("unexpected message tag {t} from rank {from}"),
                ),
            }
        }
    }

    /// Answers a thief: half of the queue, or NOWORK.
    fn answer(&mut self, thief: i32) {
        let to = self.world.process_at_rank(thief);
        match self.queue.split() {
            Some(share) => {
                let mut e = Enc::default();
                share.encode(&mut e);
                // Counts are i32: a share stops at SHARE_BYTES, far below
                // 2 GiB (one item alone cannot pass it), but say so if it
                // ever does.
                if e.buf.len() > i32::MAX as usize {
                    fatal(self.world, "a work message over 2 GiB");
                }
                self.count += 1;
                to.send_with_tag(&e.buf[..], TAG_WORK);
            }
            None => to.send_with_tag(&ONE[..], TAG_NOWORK),
        }
    }

    /// Asks a random other rank for work.
    fn request(&mut self) {
        let others = (self.size - 1) as u64;
        let mut victim = (self.next_random() % others) as i32;
        if victim >= self.rank {
            victim += 1;
        }
        self.requests_sent[victim as usize] += 1;
        self.stats.requests += 1;
        self.waiting = Some(victim);
        self.world
            .process_at_rank(victim)
            .send_with_tag(&ONE[..], TAG_REQUEST);
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Nothing to do but wait for an answer: nap, or let the hasher work.
    /// Each nap doubles the next, up to [`MAX_NAP`], until work arrives: a
    /// victim that does not answer (rank 0 busy elsewhere, a rank listing
    /// a huge directory) costs a few hundred wake-ups a second, not the
    /// 20,000 of naps that stayed at 50 us.
    fn idle(&mut self) {
        if self.hasher.is_idle() {
            std::thread::sleep(self.nap);
        } else {
            self.hasher.wait(self.nap);
        }
        self.nap = (self.nap * 2).min(MAX_NAP);
    }

    /// Safra's rules for a passive rank (queue empty).
    fn pass_token(&mut self) {
        if self.size == 1 {
            self.done = true;
            return;
        }
        let next = (self.rank + 1) % self.size;
        if self.rank == 0 {
            if !self.token_out {
                self.token_out = true;
                self.send_token(
                    next,
                    Token {
                        colour: Colour::White,
                        count: 0,
                    },
                );
                return;
            }
            let Some(t) = self.token.take() else { return };
            if t.colour == Colour::White
                && self.colour == Colour::White
                && t.count + self.count == 0
            {
                for r in 1..self.size {
                    self.world
                        .process_at_rank(r)
                        .send_with_tag(&ONE[..], TAG_DONE);
                }
                self.done = true;
            } else {
                self.send_token(
                    next,
                    Token {
                        colour: Colour::White,
                        count: 0,
                    },
                );
            }
        } else if let Some(t) = self.token.take() {
            let colour = if self.colour == Colour::Black {
                Colour::Black
            } else {
                t.colour
            };
            self.send_token(
                next,
                Token {
                    colour,
                    count: t.count + self.count,
                },
            );
        }
    }

    fn send_token(&mut self, to: i32, t: Token) {
        self.colour = Colour::White;
        self.world
            .process_at_rank(to)
            .send_with_tag(&t.encode()[..], TAG_TOKEN);
    }

    /// After DONE: answer every REQUEST still on its way, and receive the
    /// answer to this rank's own, so no message is left behind.
    fn close(&mut self) {
        if self.size == 1 {
            return;
        }
        // With naps (`idle.rs`): a rank waits here for the others to see
        // DONE, and MPI's blocking calls spin.
        let mut sent_to_me = vec![0i32; self.size as usize];
        super::idle::wait_for(|scope| {
            self.world.immediate_all_to_all_into(
                scope,
                &self.requests_sent[..],
                &mut sent_to_me[..],
            )
        });
        for r in 0..self.size {
            while self.requests_received[r as usize] < sent_to_me[r as usize] {
                let p = self.world.process_at_rank(r);
                let _ = super::idle::receive_vec(&p, TAG_REQUEST);
                self.requests_received[r as usize] += 1;
                p.send_with_tag(&ONE[..], TAG_NOWORK);
            }
        }
        if let Some(v) = self.waiting.take() {
            // Termination means no work is in flight: the answer is NOWORK.
            let _ = super::idle::receive_vec(&self.world.process_at_rank(v), TAG_NOWORK);
        }
    }
}

/// A broken protocol (a bug, or a rank from another build): say so and
/// end the whole job, since the other ranks would wait forever.
pub(super) fn fatal(world: &SimpleCommunicator, what: &str) -> ! {
    message(&format!(
        "parsum: rank {}: MPI protocol error: {what}",
        world.rank()
    ));
    world.abort(3)
}
