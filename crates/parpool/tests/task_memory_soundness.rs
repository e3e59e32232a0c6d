//! Task memory (`slab.rs`, `task_ptr.rs`) with odd tasks, sized for Miri
//! (`.ci/miri`): closures and results of zero, one and over 256 bytes and
//! aligned to 64, 128 and 4096 bytes; panicking `Drop`s of results,
//! closures and callbacks; handles outliving their pool and scope; tasks
//! freed on other threads and in thread-local destructors after the
//! thread's slab cache is gone. From a hostile review of the slab.
use parpool::{AsyncResult, ThreadPool};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[repr(align(128))]
#[derive(Clone, Copy)]
struct A128(u8);
#[repr(align(4096))]
#[derive(Clone, Copy)]
struct A4096(u8);
#[repr(align(64))]
#[derive(Clone, Copy)]
struct A64([u8; 3]);

#[test]
fn odd_sizes_and_alignments() {
    let pool = ThreadPool::with_workers(2);
    let z = pool.apply_async(|| ());
    let one = {
        let b = 7u8;
        pool.apply_async(move || b)
    };
    let a64 = {
        let a = A64([1, 2, 3]);
        pool.apply_async(move || a)
    };
    let a128 = {
        let a = A128(9);
        pool.apply_async(move || a)
    };
    let a4096 = {
        let a = A4096(5);
        pool.apply_async(move || a)
    };
    let big = {
        let arr = [3u64; 40]; // 320 bytes: global path
        pool.apply_async(move || arr)
    };
    let edge = {
        // closure just under / over class boundaries
        let arr = [1u8; 200];
        pool.apply_async(move || arr)
    };
    let r = pool.apply_async(|| A4096(1));
    z.get().unwrap();
    assert_eq!(one.get().unwrap(), 7);
    assert_eq!(a64.get().unwrap().0, [1, 2, 3]);
    assert_eq!(a128.get().unwrap().0, 9);
    assert_eq!(a4096.get().unwrap().0, 5);
    assert_eq!(big.get().unwrap()[39], 3);
    assert_eq!(edge.get().unwrap()[199], 1);
    let v = r.get().unwrap();
    assert_eq!(&v as *const A4096 as usize % 4096, 0);
    assert_eq!(v.0, 1);
}

struct PanicOnDrop(&'static str, Arc<AtomicUsize>);
impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::SeqCst);
        if !std::thread::panicking() {
            panic!("attack: {}", self.0);
        }
    }
}

#[test]
fn panicking_drops_of_result_closure_and_callback() {
    std::panic::set_hook(Box::new(|_| {}));
    let drops = Arc::new(AtomicUsize::new(0));
    let pool = ThreadPool::with_workers(1);
    // Result whose drop panics, dropped with the handle (never got).
    let d = drops.clone();
    let h = pool.apply_async(move || PanicOnDrop("result", d));
    h.wait();
    let r = catch_unwind(AssertUnwindSafe(|| drop(h)));
    eprintln!("drop of handle with panicking result: {:?}", r.is_err());
    // Closure whose captured value panics on drop, cancelled before running.
    let gate = Arc::new(std::sync::Barrier::new(2));
    let g = gate.clone();
    let blocker = pool.apply_async(move || {
        g.wait();
    });
    let d = drops.clone();
    let cap = PanicOnDrop("closure", d);
    let h2 = pool.apply_async(move || {
        let _c = &cap;
    });
    let c = catch_unwind(AssertUnwindSafe(|| h2.cancel()));
    eprintln!("cancel with panicking closure drop: {:?}", c.is_err());
    let r2 = catch_unwind(AssertUnwindSafe(|| drop(h2)));
    eprintln!("drop after cancel: {:?}", r2.is_err());
    gate.wait();
    blocker.get().unwrap();
    // Callback whose capture panics on drop.
    let d = drops.clone();
    let cb = PanicOnDrop("callback", d);
    let h3 = pool.apply_async(|| 1u32).on_success(move |_| {
        let _c = &cb;
    });
    let r3 = catch_unwind(AssertUnwindSafe(|| h3.get()));
    eprintln!("get with panicking callback drop: {:?}", r3.is_err());
    drop(pool);
    let _ = std::panic::take_hook();
    assert_eq!(drops.load(Ordering::SeqCst), 3);
}

#[test]
fn handle_outlives_pool_and_scope() {
    let pool = ThreadPool::with_workers(2);
    let h: AsyncResult<Vec<u8>> = pool.apply_async(|| vec![1, 2, 3]);
    let h2 = pool.scope(|s| s.apply_async(|| String::from("scoped")));
    let unrun;
    {
        let p2 = ThreadPool::with_workers(1);
        p2.terminate();
        unrun = p2.apply_async(|| 5u8); // refused
    }
    drop(pool);
    assert_eq!(h.get().unwrap(), vec![1, 2, 3]);
    assert_eq!(h2.get().unwrap(), "scoped");
    assert!(unrun.get().is_err());
}

#[test]
fn freed_on_other_thread_and_tls_destructor() {
    struct Holder(Option<AsyncResult<u64>>);
    impl Drop for Holder {
        fn drop(&mut self) {
            if let Some(h) = self.0.take() {
                assert_eq!(h.get().unwrap(), 42);
            }
        }
    }
    thread_local! {
        static H: std::cell::RefCell<Holder> = const { std::cell::RefCell::new(Holder(None)) };
    }
    let pool = Arc::new(ThreadPool::with_workers(1));
    let p = pool.clone();
    std::thread::spawn(move || {
        // The handle is put in a TLS slot first (so its destructor is
        // registered before the slab cache's and, being LIFO, may run after it).
        H.with(|h| h.borrow_mut().0 = Some(p.apply_async(|| 42u64)));
        let hs: Vec<_> = (0..40u64).map(|i| p.apply_async(move || i)).collect();
        for h in hs {
            h.get().unwrap();
        }
    })
    .join()
    .unwrap();
    // Handles made here, freed on another thread.
    let hs: Vec<_> = (0..40u64).map(|i| pool.apply_async(move || i)).collect();
    std::thread::spawn(move || {
        for h in hs {
            h.get().unwrap();
        }
    })
    .join()
    .unwrap();
}

#[test]
fn cancel_races_and_cross_thread_drops() {
    let pool = Arc::new(ThreadPool::with_workers(2));
    let hs: Vec<_> = (0..30u64).map(|i| pool.apply_async(move || i)).collect();
    let (a, b): (Vec<_>, Vec<_>) = hs.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let t = std::thread::spawn(move || {
        for (_, h) in a {
            h.cancel();
            drop(h);
        }
    });
    for (_, h) in b {
        let _ = h.cancel();
    }
    t.join().unwrap();
    pool.terminate();
    let hs: Vec<_> = (0..10u64).map(|i| pool.apply_async(move || i)).collect();
    for h in hs {
        assert!(h.get().is_err());
    }
}

/// A TLS destructor that runs after the slab cache's (registered before it)
/// submits new tasks and frees them: alloc's and dealloc's `try_with`
/// fallbacks.
#[test]
fn tls_destructor_allocates_after_cache_is_gone() {
    struct Late(Option<Arc<ThreadPool>>);
    impl Drop for Late {
        fn drop(&mut self) {
            if let Some(p) = self.0.take() {
                let hs: Vec<_> = (0..5u64).map(|i| p.apply_async(move || i + 1)).collect();
                // (`get` on a pending task parks, which needs parpool's own
                // TLS: spin on `ready` instead, then `get` takes the fast path.)
                for h in &hs {
                    while !h.ready() {
                        std::thread::yield_now();
                    }
                }
                let s: u64 = hs.into_iter().map(|h| h.get().unwrap()).sum();
                assert_eq!(s, 15);
                let h = p.apply_async(|| [7u8; 130]);
                drop(h); // maybe freed by the worker, maybe here
            }
        }
    }
    thread_local! {
        static L: std::cell::RefCell<Late> = const { std::cell::RefCell::new(Late(None)) };
    }
    let pool = Arc::new(ThreadPool::with_workers(1));
    let p = pool.clone();
    std::thread::spawn(move || {
        L.with(|l| l.borrow_mut().0 = Some(p.clone()));
        let hs: Vec<_> = (0..3u64).map(|i| p.apply_async(move || i)).collect();
        for h in hs {
            h.get().unwrap();
        }
    })
    .join()
    .unwrap();
    // The slots taken one at a time by the fallback come back.
    let hs: Vec<_> = (0..70u64).map(|i| pool.apply_async(move || i)).collect();
    for (i, h) in hs.into_iter().enumerate() {
        assert_eq!(h.get().unwrap(), i as u64);
    }
}
