//! Task memory: the blocks that `apply_async`'s tasks live in.
//!
//! A task is allocated by the thread that submits it and freed by whichever
//! thread drops its last reference, often after hundreds of thousands of
//! others are allocated (W4 keeps a million handles alive). glibc serves
//! that pattern badly: it gives the freed memory back to the system between
//! bursts and faults it in again, 4 KiB at a time, and it packs tasks so
//! that neighbours share cache lines, which the submitter and the workers
//! then write at once (`docs/design.md` §12). This module is a size-class
//! allocator for such small objects:
//!
//! - **Slots own their cache lines.** Slot sizes are multiples of 64 bytes
//!   and slots are aligned to 64, so a worker completing one task never
//!   writes a line the submitter is filling with the next.
//! - **Regions.** Memory comes in regions of [`REGION`] bytes (2 MiB),
//!   aligned to their size, mapped from the system and unmapped when
//!   freed (on Linux; elsewhere from the global allocator). A region
//!   serves one size class: a header, then slots of one size. A slot
//!   finds its region by rounding its address down. Regions are not
//!   marked for transparent huge pages: where the kernel must compact
//!   memory to find one, the first touch of a region stalled for up to a
//!   second (`docs/design.md` §6).
//! - **Thread caches.** Each thread keeps up to [`CACHED`] free slots per
//!   class, all of one region; `alloc` and `dealloc` touch only that
//!   cache, and move [`BATCH`] slots at a time to or from the class's
//!   shared state, under its mutex (and the whole cache when a slot of
//!   another region is freed). `alloc` asks the CPU to prefetch, for
//!   writing, the slot it will hand out [`PREFETCH_AHEAD`] allocations
//!   later: reused memory is cold.
//! - **Address order.** Slots go out in the order a region lists them
//!   (carved ones by address, freed ones the last freed first, still warm
//!   in the cache), so a burst's tasks ascend in memory and the
//!   submitter writing them, and `get` reading them back, walk one stream
//!   the hardware prefetchers follow. Handing out each batch last slot
//!   first (runs of 32 descending) cost W4 a third of its `get` loop and
//!   W8-W4 a quarter of its time (`docs/design.md` §12).
//! - **The shared state** of a class is the list of its regions that have
//!   free slots. A region counts its slots that are out (allocated, or in
//!   some thread's cache); one whose count returns to zero is empty.
//! - **Spares.** A burst that starts a new region asks for the next one:
//!   an idle worker maps it and faults its pages in ([`prepare_ahead`]),
//!   so the submitting thread, the burst's bottleneck, does not zero
//!   128 MiB of pages itself for a million tasks while the workers it
//!   feeds wait for work. At most one spare per class.
//!
//! **Invariant:** a slot is in exactly one place: allocated, in one thread
//! cache, or in its region's free list or uncarved tail; and a region's
//! `out` counts exactly its slots in the first two places. A region is
//! freed only with `out == 0`, so no slot of it can be reached.
//!
//! **What is kept.** A class's first region is never freed (it holds a
//! program's everyday few tasks, in the pages it touched). While any pool
//! lives, up to [`KEEP_EMPTY`] of the other regions, empty (128 MiB, all
//! classes together), are kept for the next burst, the point of the module.
//! They go back to the system, with the spares (up to 8 MiB, faulted in),
//! when the last pool is dropped, and also once the burst is over: when
//! no burst, on any pool, has used task memory for [`DECAY`] (10 s), an
//! idle worker gives them back ([`decay`], [`give_back_if_due`]), and asks
//! glibc to trim what the burst freed through it (the queue's blocks,
//! tasks too big for a class). A region with a slot still out (a handle
//! kept after its pool) stays until that slot comes back, and then goes
//! back [`DECAY`] later; so does a region with a slot in some thread's
//! cache: until that thread next allocates or frees a task of that class,
//! or exits (a thread that gives back sends its own cache back first). So
//! each thread that has freed tasks holds at most one region per class
//! (2 MiB of address space, and whatever of it was touched), also after
//! every pool is gone; 32 idle threads that each freed the last task of
//! another region held 67 MiB in a hostile test.
//!
//! **Fork.** The forking thread takes every class's mutex around `fork`
//! (`pthread_atfork`), so a child never inherits one held by a thread it
//! does not have.
//!
//! Objects larger than [`MAX_SIZE`] or aligned to more than [`ALIGN`] come
//! from the global allocator, as does everything under loom.

use std::alloc::{self, Layout};
use std::cell::Cell;
use std::cell::RefCell;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Bytes per region, and its alignment. Miri runs a small one.
const REGION: usize = if cfg!(miri) { 64 << 10 } else { 2 << 20 };
/// The region's header: its first bytes, before its first slot.
const HEADER: usize = 64;
/// Slot sizes are multiples of this, and slots are aligned to it: a cache
/// line, so that no two tasks share one (see the module doc).
const ALIGN: usize = 64;
/// The largest slot.
const MAX_SIZE: usize = 256;
const CLASSES: usize = MAX_SIZE / ALIGN;
/// Slots moved between a thread's cache and the shared state at once.
const BATCH: usize = 32;
/// How many allocations ahead `alloc` prefetches the slot it will hand out:
/// one allocation (about 100 ns of a submitting loop) is shorter than a
/// miss to memory, so the prefetch of the very next slot arrived late
/// (W4 probe, submitter's CPU per job: 95-117 ns at 1, 82-94 at 12;
/// `docs/design.md` §12). At most [`BATCH`].
const PREFETCH_AHEAD: usize = 12;
const _: () = assert!(PREFETCH_AHEAD <= BATCH);
/// Most free slots a thread keeps per class.
const CACHED: usize = 2 * BATCH;
/// Most empty burst regions kept, all classes together, while a pool
/// lives: 128 MiB, a million pending 128-byte tasks.
const KEEP_EMPTY: usize = 64;

/// Live pools: while there is one, empty regions are kept.
static POOLS: AtomicUsize = AtomicUsize::new(0);
/// Empty burst regions kept, all classes together.
static KEPT: AtomicUsize = AtomicUsize::new(0);
/// Classes, one bit each, that started a new burst region since an idle
/// worker last prepared a spare for them (see [`prepare_ahead`]).
static WANTED: AtomicUsize = AtomicUsize::new(0);
/// Set when a burst may have left memory to give back: a burst region was
/// started, a burst region emptied and was kept, a spare was prepared, or
/// [`BIG_BURST`] bytes of big tasks went to the global allocator. Cleared
/// by a give-back ([`give_back_if_due`], or the last pool's drop).
static DIRTY: AtomicBool = AtomicBool::new(false);
/// When a burst last used task memory ([`mark`], [`touch`]): nanoseconds
/// since [`EPOCH`]. A give-back waits until this is [`DECAY`] old.
static LAST_USE: AtomicU64 = AtomicU64::new(0);
static EPOCH: OnceLock<Instant> = OnceLock::new();
/// Bytes of tasks too big for a class, allocated by one thread, after
/// which a burst of them counts as one ([`DIRTY`]).
const BIG_BURST: usize = 8 << 20;
/// How long a burst's memory must go unused before an idle worker gives it
/// back ([`give_back_if_due`]): long enough that bursts with pauses
/// between them keep reusing it (the report's W4 samples of parpool are
/// up to about 8 s apart, while its peers' run), short enough that a
/// service whose burst is over does not sit on it. jemalloc's default
/// decay of dirty pages is also 10 s.
pub(crate) const DECAY: Duration = Duration::from_secs(10);

/// One class's shared state.
static SHARED: [Mutex<Class>; CLASSES] = [const { Mutex::new(Class::new()) }; CLASSES];

/// A region's header, at its start. Read and written only under its
/// class's mutex.
#[repr(C)]
struct Region {
    /// Returned slots, linked through their first word.
    free: *mut u8,
    /// Slots handed out from the start so far; the rest is untouched.
    carved: usize,
    /// Slots out: allocated, or in a thread's cache.
    out: usize,
    /// Whether the region is in its class's `regions`.
    listed: bool,
    /// Whether it was made during a burst: every region of its class but
    /// the first. The first is never freed, so a program that queues a few
    /// tasks at a time touches a few pages of it, and a pool built and
    /// dropped over and over maps nothing anew.
    burst: bool,
}

const _: () = assert!(std::mem::size_of::<Region>() <= HEADER);
const _: () = assert!(HEADER % ALIGN == 0 && REGION % ALIGN == 0);

struct Class {
    /// Regions that may have free slots (some are found full lazily),
    /// newest last. Every region with `out == 0` is here.
    regions: Vec<NonNull<Region>>,
    /// Regions of this class, listed or not.
    count: usize,
    /// A region mapped and faulted in ahead by an idle worker, not yet
    /// used (so not counted, and without a header): the next region a
    /// burst needs (see [`prepare_ahead`]).
    spare: Option<NonNull<u8>>,
}

// SAFETY: the pointers are to regions, which only this class's mutex
// guards; the `Class` moves between threads only inside that mutex.
unsafe impl Send for Class {}

impl Class {
    const fn new() -> Self {
        Class {
            regions: Vec::new(),
            count: 0,
            spare: None,
        }
    }

    /// Moves up to `n` free slots of this class (number `class`), all of
    /// one region, into `into`, carving a new region if none has any; at
    /// least one unless memory runs out (which aborts, as the global
    /// allocator's failure does).
    fn take(&mut self, class: usize, n: usize, into: &mut Vec<NonNull<u8>>) {
        let size = slot_size(class);
        let per_region = (REGION - HEADER) / size;
        let mut got = 0;
        while got == 0 {
            let Some(&region) = self.regions.last() else {
                let burst = self.count > 0;
                // A spare exists only once a burst has started (it is asked
                // for below), so it is always a burst region.
                let base = self.spare.take().unwrap_or_else(map_region);
                self.regions.push(start_region(base, burst));
                self.count += 1;
                if burst {
                    // Counted as a kept empty region until taken from, just
                    // below, as every empty burst region is.
                    KEPT.fetch_add(1, Ordering::Relaxed);
                    // A burst that needed this region will likely need the
                    // next: an idle worker prepares it.
                    WANTED.fetch_or(1 << class, Ordering::Relaxed);
                    mark();
                }
                continue;
            };
            // SAFETY: a listed region is live (freed only after it leaves
            // the list) and ours under the class's mutex.
            let r = unsafe { &mut *region.as_ptr() };
            if r.out == 0 && r.burst {
                KEPT.fetch_sub(1, Ordering::Relaxed);
                // A burst reusing kept memory: not over yet.
                touch();
            }
            let base = region.as_ptr().cast::<u8>();
            while got < n {
                let slot = if !r.free.is_null() {
                    let slot = r.free;
                    // SAFETY: a slot on the free list holds the next one in
                    // its first word (written by `put`), aligned to `ALIGN`.
                    r.free = unsafe { slot.cast::<*mut u8>().read() };
                    slot
                } else if r.carved < per_region {
                    // SAFETY: inside the region: `HEADER + carved * size`
                    // plus one slot is at most `REGION`.
                    let slot = unsafe { base.add(HEADER + r.carved * size) };
                    r.carved += 1;
                    slot
                } else {
                    break;
                };
                r.out += 1;
                // SAFETY: derived from the region's non-null base.
                into.push(unsafe { NonNull::new_unchecked(slot) });
                got += 1;
            }
            if r.free.is_null() && r.carved == per_region {
                r.listed = false;
                self.regions.pop();
            }
        }
    }

    /// Returns `slot` to its region's free list; frees the region if that
    /// leaves it empty and it is not kept.
    ///
    /// # Safety
    ///
    /// `slot` came from `take` of this class and is out.
    unsafe fn put(&mut self, slot: NonNull<u8>) {
        let slot = slot.as_ptr();
        // SAFETY: regions are aligned to `REGION`, so rounding down stays
        // inside the slot's region (same allocation) and finds its header.
        let region = unsafe { slot.sub(slot as usize % REGION) }.cast::<Region>();
        // SAFETY: the region is live while a slot of it is out; ours under
        // the class's mutex.
        let r = unsafe { &mut *region };
        // SAFETY: the slot is ours (out, returned now) and holds a pointer.
        unsafe { slot.cast::<*mut u8>().write(r.free) };
        r.free = slot;
        r.out -= 1;
        if !r.listed {
            r.listed = true;
            // SAFETY: non-null, derived from the slot.
            self.regions.push(unsafe { NonNull::new_unchecked(region) });
        }
        if r.out == 0 {
            // Empty: start it afresh, its slots in address order again.
            r.free = ptr::null_mut();
            r.carved = 0;
            if r.burst && keep_one() {
                // Kept for the next burst, and given back if none comes.
                mark();
            } else if r.burst {
                // SAFETY: non-null, derived from the slot.
                let region = unsafe { NonNull::new_unchecked(region) };
                // Always found: it was listed just above if it was not.
                let at = self.regions.iter().rposition(|&r| r == region);
                debug_assert!(at.is_some(), "parpool: an empty region is listed");
                if let Some(at) = at {
                    // SAFETY: listed at `at` and empty.
                    unsafe { self.release(at) };
                }
            }
        }
    }

    /// Frees the empty burst region listed at `at`, not counted as kept.
    ///
    /// # Safety
    ///
    /// The region listed at `at` has `out == 0`.
    unsafe fn release(&mut self, at: usize) {
        let region = self.regions.swap_remove(at);
        self.count -= 1;
        // SAFETY: made by `map_region`; nothing of it is reachable
        // (`out == 0`, and it is no longer listed).
        unsafe { unmap_region(region.cast()) };
    }

    /// Frees every empty burst region and the spare (the last pool is
    /// gone). Whether a burst region was freed.
    fn release_empty(&mut self) -> bool {
        let mut released = false;
        if let Some(base) = self.spare.take() {
            // SAFETY: made by `map_region`, and reachable only as the spare.
            unsafe { unmap_region(base) };
        }
        let mut at = 0;
        while at < self.regions.len() {
            let region = self.regions[at];
            // SAFETY: listed, so live; ours under the mutex.
            let r = unsafe { &*region.as_ptr() };
            if r.out == 0 && r.burst {
                KEPT.fetch_sub(1, Ordering::Relaxed);
                // SAFETY: listed at `at` and empty; no longer counted as
                // kept. `swap_remove` moves the last region to `at`, which
                // the loop looks at next.
                unsafe { self.release(at) };
                released = true;
            } else {
                at += 1;
            }
        }
        released
    }
}

/// Whether an empty burst region may be kept; if so, it is counted.
fn keep_one() -> bool {
    if POOLS.load(Ordering::Relaxed) == 0 {
        return false;
    }
    if KEPT.fetch_add(1, Ordering::Relaxed) < KEEP_EMPTY {
        return true;
    }
    KEPT.fetch_sub(1, Ordering::Relaxed);
    false
}

/// Makes the fresh mapping `base` a new, empty region, listed.
fn start_region(base: NonNull<u8>, burst: bool) -> NonNull<Region> {
    let region = base.cast::<Region>();
    // SAFETY: the region's start, aligned to `REGION`, so to `Region`.
    unsafe {
        region.as_ptr().write(Region {
            free: ptr::null_mut(),
            carved: 0,
            out: 0,
            listed: true,
            burst,
        })
    };
    region
}

/// `REGION` bytes aligned to `REGION`, straight from the system: a mapping
/// of twice the size, trimmed to the aligned half. Not from the global
/// allocator: glibc serves large aligned requests from its heap once
/// freeing one has raised its mapping threshold, and then never gives
/// them back (a hostile test grew an idle process to 450 MiB that way).
/// Out of memory, it aborts, as the global allocator's failure does.
fn map_region() -> NonNull<u8> {
    try_map_region().unwrap_or_else(|| alloc::handle_alloc_error(region_layout()))
}

/// As [`map_region`], but `None` when the system has no memory for it.
#[cfg(all(target_os = "linux", not(miri)))]
fn try_map_region() -> Option<NonNull<u8>> {
    // SAFETY: a fresh private anonymous mapping; no existing memory is
    // touched.
    let raw = unsafe {
        libc::mmap(
            ptr::null_mut(),
            2 * REGION,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return None;
    }
    let raw = raw.cast::<u8>();
    let head = (REGION - raw as usize % REGION) % REGION;
    // SAFETY: `head < REGION`, inside the mapping of `2 * REGION` bytes.
    let base = unsafe { raw.add(head) };
    // SAFETY: the parts before and after the aligned region are ours, and
    // nothing points into them. Failing to unmap them only wastes address
    // space.
    unsafe {
        if head > 0 {
            libc::munmap(raw.cast(), head);
        }
        libc::munmap(base.add(REGION).cast(), REGION - head);
    }
    // SAFETY: inside a successful mapping, so not null.
    Some(unsafe { NonNull::new_unchecked(base) })
}

/// Gives a region back to the system.
///
/// # Safety
///
/// `base` came from `map_region`, and nothing of it is used again.
#[cfg(all(target_os = "linux", not(miri)))]
unsafe fn unmap_region(base: NonNull<u8>) {
    // SAFETY: the region's whole mapping (the caller's promise).
    unsafe { libc::munmap(base.as_ptr().cast(), REGION) };
}

#[cfg(not(all(target_os = "linux", not(miri))))]
fn try_map_region() -> Option<NonNull<u8>> {
    // SAFETY: the layout's size is not zero.
    NonNull::new(unsafe { alloc::alloc(region_layout()) })
}

/// Gives a region back to the global allocator.
///
/// # Safety
///
/// `base` came from `map_region`, and nothing of it is used again.
#[cfg(not(all(target_os = "linux", not(miri))))]
unsafe fn unmap_region(base: NonNull<u8>) {
    // SAFETY: allocated by `map_region` with this layout.
    unsafe { alloc::dealloc(base.as_ptr(), region_layout()) };
}

/// Faults in a fresh region's pages, as its first writes would: done by an
/// idle worker for a spare, so that the thread submitting a burst does not
/// (zeroing a page and charging it to the process is most of a fresh
/// burst's cost, `docs/design.md` §12).
#[cfg(all(target_os = "linux", not(miri)))]
fn populate(base: NonNull<u8>) {
    // SAFETY: the whole of a fresh private mapping of ours; populating
    // changes no byte of it (fresh anonymous pages read as zero either way).
    let done = unsafe { libc::madvise(base.as_ptr().cast(), REGION, libc::MADV_POPULATE_WRITE) };
    if done != 0 {
        // Before Linux 5.14: touch one byte per page, writing the zero it
        // already holds.
        for page in (0..REGION).step_by(4096) {
            // SAFETY: inside the region, which nothing else uses yet.
            unsafe { base.as_ptr().add(page).write_volatile(0) };
        }
    }
}

#[cfg(not(all(target_os = "linux", not(miri))))]
fn populate(_base: NonNull<u8>) {}

/// Called by an idle worker: for one class whose burst started a new
/// region since, maps the next region and faults it in, as the spare that
/// class's next new region will be. A thread submitting a long burst (W4:
/// a million tasks, 64 regions) then finds its regions ready instead of
/// faulting in every page itself, while the workers it feeds wait for work
/// anyway. At most one spare per class; freed with the kept regions when
/// the last pool is dropped. One class per call (a region takes a few
/// milliseconds to fault in), so the worker looks at its queue in between.
/// Returns whether there was a request: the caller then checks for work
/// and calls again before it sleeps.
pub(crate) fn prepare_ahead() -> bool {
    let wanted = WANTED.load(Ordering::Relaxed);
    if wanted == 0 {
        return false;
    }
    let class = wanted.trailing_zeros() as usize;
    let bit = 1 << class;
    if WANTED.fetch_and(!bit, Ordering::Relaxed) & bit == 0 || shared(class).spare.is_some() {
        // Another worker took the request, or it is met already.
        return true;
    }
    // Only ahead of need: without memory for it, the burst's own thread
    // maps the region (and meets the failure) when it needs it, and asks
    // again for the one after.
    let Some(base) = try_map_region() else {
        return true;
    };
    populate(base);
    let mut shared = shared(class);
    // The last pool's drop frees the spare under this mutex after it
    // counted the pool out: a spare stored after that would outlive every
    // pool. (It cannot happen while this worker's pool lives, but the
    // check costs nothing.)
    if shared.spare.is_none() && POOLS.load(Ordering::Relaxed) > 0 {
        shared.spare = Some(base);
        // Given back with the burst's regions if no burst comes for it.
        DIRTY.store(true, Ordering::SeqCst);
    } else {
        drop(shared);
        // SAFETY: just mapped, and never reachable from elsewhere.
        unsafe { unmap_region(base) };
    }
    true
}

fn region_layout() -> Layout {
    // Both are powers of two, and the size a multiple of the alignment.
    Layout::from_size_align(REGION, REGION).expect("a valid region layout")
}

/// Which class serves `layout`, if any.
fn class_of(layout: Layout) -> Option<usize> {
    if cfg!(parpool_loom) || layout.align() > ALIGN || layout.size() > MAX_SIZE {
        return None;
    }
    Some(layout.size().max(1).div_ceil(ALIGN) - 1)
}

/// The size of class `class`'s slots: the largest size [`class_of`] gives
/// that class.
fn slot_size(class: usize) -> usize {
    (class + 1) * ALIGN
}

fn shared(class: usize) -> std::sync::MutexGuard<'static, Class> {
    // Never poisoned in practice: nothing under it panics but allocation
    // failure, which aborts. If it were, the state is still consistent.
    SHARED[class].lock().unwrap_or_else(|e| e.into_inner())
}

/// This thread's free slots, per class.
struct Cache([Vec<NonNull<u8>>; CLASSES]);

impl Cache {
    /// Sends every cached slot back to its class's shared state.
    fn flush(&mut self) {
        for (class, slots) in self.0.iter_mut().enumerate() {
            if !slots.is_empty() {
                let mut shared = shared(class);
                for slot in slots.drain(..) {
                    // SAFETY: a cached slot came from `take` of its class
                    // and is out.
                    unsafe { shared.put(slot) };
                }
            }
        }
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        self.flush();
    }
}

thread_local! {
    static CACHE: RefCell<Cache> = const { RefCell::new(Cache([const { Vec::new() }; CLASSES])) };
    /// Bytes of big tasks this thread allocated since it last marked a
    /// burst of them ([`count_big`]).
    static BIG: Cell<usize> = const { Cell::new(0) };
}

/// Counts a task too big for a class: every [`BIG_BURST`] bytes of them
/// from one thread mark a burst whose memory, freed through the global
/// allocator, is worth giving back ([`give_back_if_due`]).
fn count_big(size: usize) {
    let _ = BIG.try_with(|big| {
        let total = big.get() + size;
        if total >= BIG_BURST {
            big.set(0);
            mark();
        } else {
            big.set(total);
        }
    });
}

/// Allocates memory for `layout`, as the global allocator would.
pub(crate) fn alloc(layout: Layout) -> NonNull<u8> {
    let Some(class) = class_of(layout) else {
        count_big(layout.size());
        return global_alloc(layout);
    };
    let size = slot_size(class);
    let cached = CACHE.try_with(|cache| {
        let slots = &mut cache.borrow_mut().0[class];
        if slots.is_empty() {
            slots.reserve_exact(CACHED);
            shared(class).take(class, BATCH, slots);
            // `take` lists them in its region's order (carved slots by
            // address, freed ones the last freed first) and `pop` takes
            // the last: reversed, they go out in that order (module doc).
            slots.reverse();
            // The first slots of the batch have no earlier `alloc` to
            // have asked for them.
            for &next in slots.iter().rev().take(PREFETCH_AHEAD) {
                prefetch_for_write(next, size);
            }
        }
        let slot = slots.pop();
        if let Some(i) = slots.len().checked_sub(PREFETCH_AHEAD) {
            prefetch_for_write(slots[i], size);
        }
        slot
    });
    match cached {
        Ok(Some(slot)) => slot,
        // This thread's cache is gone (it is exiting): one slot straight
        // from the shared state.
        Ok(None) | Err(_) => {
            let mut one = Vec::with_capacity(1);
            shared(class).take(class, 1, &mut one);
            one[0]
        }
    }
}

/// Asks the CPU to bring the next slot's lines into the cache, for
/// writing: a slot reused from an earlier burst is long out of the cache,
/// and the task's first store to it would stall on memory (in W4, 93% of
/// `Task::spawn`'s samples were that store; `docs/design.md` §12).
#[inline]
fn prefetch_for_write(slot: NonNull<u8>, size: usize) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0};
        let mut line = 0;
        while line < size {
            // SAFETY: a prefetch is a hint: it never faults and has no
            // effect on memory. The address is inside the slot.
            unsafe { _mm_prefetch::<_MM_HINT_ET0>(slot.as_ptr().wrapping_add(line).cast()) };
            line += 64;
        }
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let _ = (slot, size);
}

/// Frees memory from [`alloc()`].
///
/// # Safety
///
/// `ptr` came from [`alloc()`] with this `layout`, and is not used again.
pub(crate) unsafe fn dealloc(ptr: NonNull<u8>, layout: Layout) {
    let Some(class) = class_of(layout) else {
        // SAFETY: from `global_alloc` with this layout (the caller's
        // promise, and `class_of` decides the same way each time).
        unsafe { alloc::dealloc(ptr.as_ptr(), nonzero(layout)) };
        return;
    };
    let cached = CACHE.try_with(|cache| {
        let slots = &mut cache.borrow_mut().0[class];
        // The cache holds slots of one region: a slot of another sends the
        // whole cache back first, so an idle thread keeps at most one
        // region per class from being freed. (Frees come mostly in
        // allocation order, region by region; a hostile test whose every
        // free came from another region pinned 64 regions per class with
        // a cache that did not care.)
        let flush = match slots.first() {
            Some(&first) if region_of(first) != region_of(ptr) => slots.len(),
            _ if slots.len() >= CACHED => BATCH,
            _ => 0,
        };
        if flush > 0 {
            let mut shared = shared(class);
            let keep = slots.len() - flush;
            for slot in slots.drain(keep..) {
                // SAFETY: a cached slot came from `take` of its class.
                unsafe { shared.put(slot) };
            }
        }
        slots.push(ptr);
    });
    if cached.is_err() {
        // SAFETY: from `alloc` of this class: the caller's promise.
        unsafe { shared(class).put(ptr) };
    }
}

/// Which region a slot is in, as a number.
fn region_of(slot: NonNull<u8>) -> usize {
    slot.as_ptr() as usize / REGION
}

/// What the global allocator is asked for: at least one byte (a task is
/// never empty, but the global allocator must not see a zero size).
fn nonzero(layout: Layout) -> Layout {
    Layout::from_size_align(layout.size().max(1), layout.align()).expect("a valid layout")
}

fn global_alloc(layout: Layout) -> NonNull<u8> {
    let layout = nonzero(layout);
    // SAFETY: the size is not zero.
    let ptr = unsafe { alloc::alloc(layout) };
    NonNull::new(ptr).unwrap_or_else(|| alloc::handle_alloc_error(layout))
}

/// A live pool's hold on task memory: while one exists, empty regions are
/// kept (until a burst is over, [`give_back_if_due`]); when the last is
/// dropped, they go back to the system.
pub(crate) struct Keep(());

impl Keep {
    pub(crate) fn new() -> Self {
        #[cfg(all(target_os = "linux", not(miri)))]
        fork::register();
        POOLS.fetch_add(1, Ordering::Relaxed);
        Keep(())
    }
}

impl Drop for Keep {
    fn drop(&mut self) {
        if POOLS.fetch_sub(1, Ordering::Relaxed) == 1 {
            // The last pool: the spare and every empty burst region go
            // back, whether or not a burst marked them.
            let released = release_all_empty();
            if DIRTY.swap(false, Ordering::SeqCst) || released {
                trim_heap();
            }
        }
        // Not the last: a pool that lives on may be reusing that memory;
        // its idle workers give it back once it is `DECAY` old.
    }
}

fn now() -> u64 {
    let since = EPOCH.get_or_init(Instant::now).elapsed();
    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
}

/// A burst used task memory now (it reused a kept region).
fn touch() {
    LAST_USE.store(now(), Ordering::SeqCst);
}

/// A burst used task memory now, and may leave some to give back.
fn mark() {
    touch();
    DIRTY.store(true, Ordering::SeqCst);
}

/// How long since a burst last used task memory.
fn since_last_use() -> Duration {
    Duration::from_nanos(now().saturating_sub(LAST_USE.load(Ordering::SeqCst)))
}

/// For a worker about to idle: how long to idle before it looks again,
/// zero if a burst's memory is due to go back now ([`give_back_if_due`]).
/// With nothing marked, [`DECAY`]: a burst on another pool, or a region
/// emptying on a thread that is no worker (`Class::put`), marks the slab
/// without waking anyone, and a worker asleep for good would never see it.
pub(crate) fn decay() -> Duration {
    if !DIRTY.load(Ordering::SeqCst) {
        return DECAY;
    }
    DECAY.saturating_sub(since_last_use())
}

/// Gives a burst's memory back to the system, with pools still alive, if
/// no burst has used task memory for [`DECAY`]: called by an idle worker
/// ([`decay`]). A burst still running, on any pool, keeps it. The empty
/// burst regions and the spares go back, and the global allocator is
/// asked to return what the burst freed through it: the queue's blocks
/// (one per 31 queued jobs, `queue.rs`) and the tasks too big for a class.
/// Without this, a two-million-job backlog left 208 MB resident after its
/// pool was dropped while another pool lived, and 600 000 tasks of 320
/// bytes left 261 MB even after the last pool went
/// (`tests/queue_round2_attacks.rs`). Regions still in use stay; when they
/// empty, they mark the slab again. Only the thread that clears the mark
/// gives back.
pub(crate) fn give_back_if_due() {
    #[cfg(all(test, not(parpool_loom)))]
    if tests::GIVE_BACK_HELD.load(Ordering::SeqCst) > 0 {
        // Held off: as if a burst were using the memory (no worker spins).
        touch();
        return;
    }
    if !DIRTY.swap(false, Ordering::SeqCst) {
        return;
    }
    // Subtle: a burst stores the time, then the flag. A mark landing after
    // the swap leaves the flag set for the next give-back; one landing
    // before it is seen here by its time, and the flag goes back.
    if since_last_use() < DECAY {
        DIRTY.store(true, Ordering::SeqCst);
        return;
    }
    release_all_empty();
    trim_heap();
}

/// Frees every class's spare and empty burst regions, after sending this
/// thread's cache back so that its regions can go too (other threads'
/// caches keep theirs: see the module doc). Whether a burst region was
/// freed.
fn release_all_empty() -> bool {
    let _ = CACHE.try_with(|cache| {
        if let Ok(mut cache) = cache.try_borrow_mut() {
            cache.flush();
        }
    });
    let mut released = false;
    for class in 0..CLASSES {
        released |= shared(class).release_empty();
    }
    released
}

/// Asks the global allocator to give back the heap memory a burst freed
/// through it. glibc returns freed heap memory to the system only when a
/// large chunk is freed, never for many small ones (the queue's blocks,
/// about 66 MB for a backlog of two million): without this, that memory
/// stayed resident after the last pool was dropped (a hostile test,
/// `tests/segqueue_attacks.rs`). Called only after a burst, so a pool
/// built and dropped over and over does not pay for it.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu", not(miri)))]
    // SAFETY: `malloc_trim` has no preconditions; it takes glibc's own
    // locks, and we hold none of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Fork safety. A thread that forks while another holds a class's mutex
/// would leave the child a mutex nobody unlocks, and the child's first
/// task would wait forever (a hostile test: 29 of 1 500 children hung). As
/// allocators do, the forking thread takes every class's mutex before the
/// fork (in class order, the only order in which anything holds more than
/// one) and releases them after it, in the parent and in the child.
#[cfg(all(target_os = "linux", not(miri)))]
mod fork {
    use super::{shared, Class, CLASSES};
    use std::cell::UnsafeCell;
    use std::sync::{MutexGuard, Once};

    /// The guards held across a fork.
    struct Held(UnsafeCell<Option<[MutexGuard<'static, Class>; CLASSES]>>);

    // SAFETY: written by `prepare` only once it holds every class's mutex,
    // and emptied by `release` on the same thread (the forking one; in the
    // child, its only thread) before it lets go of them: a second forking
    // thread blocks in `prepare` on the first mutex until then. So no two
    // threads touch it at once.
    unsafe impl Sync for Held {}

    static HELD: Held = Held(UnsafeCell::new(None));

    extern "C" fn prepare() {
        let guards = std::array::from_fn(shared);
        // SAFETY: we hold every class's mutex (see `Held`).
        unsafe { *HELD.0.get() = Some(guards) };
    }

    extern "C" fn release() {
        // SAFETY: after our `prepare`, on this thread (see `Held`).
        drop(unsafe { (*HELD.0.get()).take() });
    }

    /// Installs the handlers, once per process.
    pub(super) fn register() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            // SAFETY: the handlers only lock and unlock the slab's own
            // mutexes. A failure (no memory) leaves the process as it was
            // before: without fork safety for the slab.
            unsafe { libc::pthread_atfork(Some(prepare), Some(release), Some(release)) };
        });
    }
}

// Not under loom, where every task comes from the global allocator.
#[cfg(all(test, not(parpool_loom)))]
mod tests {
    use super::*;

    /// The tests share the process's slab: one at a time, so that counts of
    /// regions are theirs alone (other modules' tests use smaller classes).
    static SERIAL: Mutex<()> = Mutex::new(());
    /// While above zero, [`give_back_if_due`] does nothing: other modules'
    /// tests idle after bursts, and would give back the regions a test here
    /// is counting.
    pub(super) static GIVE_BACK_HELD: AtomicUsize = AtomicUsize::new(0);

    /// One slab test at a time, with no give-back meanwhile.
    struct Serial(#[allow(dead_code)] std::sync::MutexGuard<'static, ()>);

    impl Drop for Serial {
        fn drop(&mut self) {
            GIVE_BACK_HELD.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn serial() -> Serial {
        let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        GIVE_BACK_HELD.fetch_add(1, Ordering::SeqCst);
        Serial(guard)
    }

    /// Fills each block with its own byte, then checks every block kept
    /// it: no two live blocks overlap.
    fn fill_and_check(blocks: &[(NonNull<u8>, Layout, u8)]) {
        for &(ptr, layout, byte) in blocks {
            // SAFETY: a live block of `layout.size()` bytes.
            unsafe { ptr.as_ptr().write_bytes(byte, layout.size()) };
        }
        for &(ptr, layout, byte) in blocks {
            // SAFETY: as above.
            let bytes = unsafe { std::slice::from_raw_parts(ptr.as_ptr(), layout.size()) };
            assert!(bytes.iter().all(|&b| b == byte), "a block was overwritten");
        }
    }

    #[test]
    fn blocks_of_every_class_and_beyond_are_aligned_and_disjoint() {
        let _serial = serial();
        let mut blocks = Vec::new();
        let sizes = [1, 8, 63, 64, 65, 80, 128, 129, 200, 256, 257, 1000];
        // Under Miri (CI's time budget) three rounds of every size, not 20:
        // 35 s there before.
        let rounds = if cfg!(miri) { 3 } else { 20 };
        for (i, &size) in sizes.iter().cycle().take(sizes.len() * rounds).enumerate() {
            for align in [1, 8, 16, 64, 128] {
                let layout = Layout::from_size_align(size, align).unwrap();
                let ptr = alloc(layout);
                assert_eq!(ptr.as_ptr() as usize % align, 0, "{layout:?}");
                if class_of(layout).is_some() {
                    assert_eq!(ptr.as_ptr() as usize % ALIGN, 0, "a slot owns its lines");
                }
                blocks.push((ptr, layout, (i % 251) as u8));
            }
        }
        fill_and_check(&blocks);
        for (ptr, layout, _) in blocks {
            // SAFETY: from `alloc` with this layout, freed once.
            unsafe { dealloc(ptr, layout) };
        }
    }

    #[test]
    fn a_zero_sized_layout_gets_a_block_too() {
        let _serial = serial();
        for align in [1, 64, 4096] {
            let layout = Layout::from_size_align(0, align).unwrap();
            let ptr = alloc(layout);
            assert_eq!(ptr.as_ptr() as usize % align, 0);
            // SAFETY: from `alloc` with this layout.
            unsafe { dealloc(ptr, layout) };
        }
    }

    /// A block handed to another thread to free.
    struct Block(NonNull<u8>);

    // SAFETY: only an address; the block itself is plain memory.
    unsafe impl Send for Block {}

    /// Blocks allocated on one thread and freed on others (as a task whose
    /// worker drops the last reference), with the threads then exiting:
    /// their caches go back, and reused blocks never overlap live ones.
    #[test]
    fn blocks_freed_on_other_threads_come_back_disjoint() {
        let _serial = serial();
        let layout = Layout::from_size_align(120, 8).unwrap();
        let rounds = if cfg!(miri) { 3 } else { 20 };
        let per = if cfg!(miri) { 150 } else { 5_000 };
        for _ in 0..rounds {
            let blocks: Vec<_> = (0..per)
                .map(|i| (alloc(layout), layout, (i % 200) as u8))
                .collect();
            fill_and_check(&blocks);
            let (left, right) = blocks.split_at(per / 2);
            let left: Vec<Block> = left.iter().map(|b| Block(b.0)).collect();
            let right: Vec<Block> = right.iter().map(|b| Block(b.0)).collect();
            std::thread::scope(|s| {
                for half in [left, right] {
                    s.spawn(move || {
                        // Allocations here too, so this thread's cache holds
                        // blocks of its own when it exits.
                        let mine: Vec<_> = (0..40).map(|_| alloc(layout)).collect();
                        for Block(ptr) in half {
                            // SAFETY: from `alloc` with this layout, freed once.
                            unsafe { dealloc(ptr, layout) };
                        }
                        for ptr in mine {
                            // SAFETY: as above.
                            unsafe { dealloc(ptr, layout) };
                        }
                    });
                }
            });
        }
    }

    /// The largest class, which no other unit test's tasks use: a layout
    /// it serves, its index, and its slots per region.
    fn largest_class() -> (Layout, usize, usize) {
        let layout = Layout::from_size_align(MAX_SIZE, 8).unwrap();
        let class = class_of(layout).unwrap();
        (layout, class, (REGION - HEADER) / MAX_SIZE)
    }

    /// While a pool lives, a burst's regions are kept: the next burst of the
    /// same size maps no new region (W4's rounds). The first region of a
    /// class is kept in any case.
    #[test]
    fn a_second_burst_reuses_the_first_bursts_regions() {
        let _serial = serial();
        let _pool = Keep::new();
        // Kept regions stay unless the cap is reached: this test needs two.
        assert!(KEPT.load(Ordering::Relaxed) + 2 <= KEEP_EMPTY);
        let (layout, class, per_region) = largest_class();
        let burst = || -> Vec<NonNull<u8>> { (0..3 * per_region).map(|_| alloc(layout)).collect() };
        let free = |blocks: Vec<NonNull<u8>>| {
            for ptr in blocks {
                // SAFETY: from `alloc` with this layout, freed once.
                unsafe { dealloc(ptr, layout) };
            }
        };
        free(burst());
        let after_first = shared(class).count;
        assert!(
            after_first >= 3,
            "a burst of three regions' slots: {after_first} regions"
        );
        let second = burst();
        assert_eq!(
            shared(class).count,
            after_first,
            "the second burst mapped new regions"
        );
        free(second);
        assert!(shared(class).count >= 1, "the first region is kept");
    }

    /// One thread's allocations of a class come out in ascending address
    /// order within a region (W4's submitter and `get` loop then walk one
    /// stream the hardware prefetchers follow; `docs/design.md` §12). A
    /// batch handed out last slot first made 31 of every 32 neighbours
    /// descend; slots other tests left on a free list may break the order
    /// a little, hence the 5%.
    #[test]
    fn one_threads_burst_ascends_in_memory() {
        let _serial = serial();
        let _pool = Keep::new();
        let (layout, _, per_region) = largest_class();
        let blocks: Vec<NonNull<u8>> = (0..3 * per_region).map(|_| alloc(layout)).collect();
        let same_region = blocks
            .windows(2)
            .filter(|w| region_of(w[0]) == region_of(w[1]));
        let (pairs, descending) = same_region.fold((0, 0), |(n, d), w| {
            (n + 1, d + usize::from(w[1].as_ptr() < w[0].as_ptr()))
        });
        for ptr in blocks {
            // SAFETY: from `alloc` with this layout, freed once.
            unsafe { dealloc(ptr, layout) };
        }
        assert!(
            pairs >= 2 * per_region,
            "only {pairs} neighbours shared a region"
        );
        assert!(
            descending * 20 <= pairs,
            "{descending} of {pairs} consecutive allocations went down in memory"
        );
    }

    /// A burst that starts a new region asks for a spare; an idle worker's
    /// `prepare_ahead` makes one, and the burst's next new region is that
    /// spare. Freeing every empty region (the last pool's drop) frees the
    /// spare too. Workers of other tests' pools may prepare it first: the
    /// test only needs it to exist.
    #[test]
    fn a_burst_gets_its_next_region_prepared() {
        let _serial = serial();
        let _pool = Keep::new();
        assert!(KEPT.load(Ordering::Relaxed) + 3 <= KEEP_EMPTY);
        let (layout, class, per_region) = largest_class();
        // Regions' worth of blocks until a spare exists: kept empty regions
        // (other tests') are used first, then new ones are started.
        let mut blocks: Vec<NonNull<u8>> = Vec::new();
        let spare = loop {
            prepare_ahead();
            if let Some(spare) = shared(class).spare {
                break spare;
            }
            assert!(
                blocks.len() < 80 * per_region,
                "no spare region was prepared"
            );
            blocks.extend((0..per_region).map(|_| alloc(layout)));
        };
        // Everything carved so far is in use: the next new region must be
        // the spare. (A kept empty region, if any, would be used first.)
        let mut guard = 0;
        while !blocks.iter().any(|b| region_of(*b) == region_of(spare)) {
            blocks.push(alloc(layout));
            guard += 1;
            assert!(guard <= 3 * per_region, "the spare was never used");
        }
        // The spare's memory holds live, disjoint blocks.
        let spare_blocks: Vec<_> = blocks
            .iter()
            .filter(|b| region_of(**b) == region_of(spare))
            .enumerate()
            .map(|(i, &b)| (b, layout, (i % 251) as u8))
            .collect();
        fill_and_check(&spare_blocks);
        for ptr in blocks {
            // SAFETY: from `alloc` with this layout, freed once.
            unsafe { dealloc(ptr, layout) };
        }
        // This thread's cache, then every empty region and any spare.
        CACHE.with(|cache| cache.borrow_mut().flush());
        let mut shared = shared(class);
        shared.release_empty();
        assert!(shared.spare.is_none(), "the spare outlived release_empty");
    }

    /// A give-back with a pool alive (`release_all_empty`, the heart of
    /// [`give_back_if_due`]) frees the empty burst regions and the spare,
    /// and nothing a live slot is in: a slot kept from the middle of a burst
    /// keeps its bytes and its region, and is freed normally afterwards.
    /// The next burst maps regions again.
    #[test]
    fn a_give_back_with_a_pool_alive_frees_only_empty_regions() {
        let _serial = serial();
        let _pool = Keep::new();
        let (layout, class, per_region) = largest_class();
        let blocks: Vec<NonNull<u8>> = (0..4 * per_region).map(|_| alloc(layout)).collect();
        let keep = blocks[2 * per_region];
        for &ptr in blocks.iter().filter(|&&b| b != keep) {
            // SAFETY: from `alloc` with this layout, freed once.
            unsafe { dealloc(ptr, layout) };
        }
        fill_and_check(&[(keep, layout, 0xA5)]);
        prepare_ahead();
        let before = shared(class).count;
        assert!(
            before >= 4,
            "a burst of four regions' slots: {before} regions"
        );
        assert!(release_all_empty(), "no burst region was released");
        {
            let shared = shared(class);
            assert!(shared.spare.is_none(), "the spare outlived the give-back");
            assert!(
                shared.count < before && shared.count >= 2,
                "{before} regions before, {} after: the first and the kept slot's stay",
                shared.count
            );
            let listed = shared
                .regions
                .iter()
                .any(|r| r.as_ptr() as usize == region_of(keep) * REGION);
            assert!(listed, "the live slot's region was released");
        }
        // SAFETY: a live block of `layout.size()` bytes.
        let bytes = unsafe { std::slice::from_raw_parts(keep.as_ptr(), layout.size()) };
        assert!(
            bytes.iter().all(|&b| b == 0xA5),
            "the live slot was overwritten"
        );
        // SAFETY: from `alloc` with this layout, freed once.
        unsafe { dealloc(keep, layout) };
        let again: Vec<_> = (0..2 * per_region)
            .enumerate()
            .map(|(i, _)| (alloc(layout), layout, (i % 251) as u8))
            .collect();
        fill_and_check(&again);
        for (ptr, layout, _) in again {
            // SAFETY: from `alloc` with this layout, freed once.
            unsafe { dealloc(ptr, layout) };
        }
    }
}
