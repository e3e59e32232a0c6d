//! TEMPORARY shim with the slice of parpool's API that parsum uses
//! (`ThreadPool::with_workers`, `map`, `imap(..).buffer(n)`), built on std
//! threads so parsum can be tested end to end before parpool lands. It is
//! replaced by `parpool::ThreadPool` once the library's core API is merged.

#![allow(clippy::explicit_counter_loop)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send + 'static>;

pub struct ThreadPool {
    tx: Option<mpsc::Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
    n: usize,
}

impl ThreadPool {
    pub fn with_workers(n: usize) -> ThreadPool {
        assert!(n > 0);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = (0..n)
            .map(|_| {
                let rx = Arc::clone(&rx);
                std::thread::spawn(move || loop {
                    let job = rx.lock().unwrap().recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                })
            })
            .collect();
        ThreadPool {
            tx: Some(tx),
            threads,
            n,
        }
    }

    pub fn workers(&self) -> usize {
        self.n
    }

    /// Blocking, ordered map; `f` may borrow.
    pub fn map<T, R, F, I>(&self, f: F, inputs: I) -> Vec<R>
    where
        I: IntoIterator<Item = T>,
        T: Send,
        R: Send,
        F: Fn(T) -> R + Sync,
    {
        let items: Vec<Mutex<Option<T>>> =
            inputs.into_iter().map(|t| Mutex::new(Some(t))).collect();
        let next = AtomicUsize::new(0);
        let mut out: Vec<(usize, R)> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..self.n.min(items.len()).max(1))
                .map(|_| {
                    s.spawn(|| {
                        let mut mine = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= items.len() {
                                return mine;
                            }
                            let t = items[i].lock().unwrap().take().unwrap();
                            mine.push((i, f(t)));
                        }
                    })
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        out.sort_by_key(|(i, _)| *i);
        out.into_iter().map(|(_, r)| r).collect()
    }

    /// Lazy ordered map with a bounded read-ahead.
    pub fn imap<T, R, F, I>(&self, f: F, inputs: I) -> Imap<R>
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> R + Send + Sync + 'static,
    {
        let (res_tx, res_rx) = mpsc::channel::<(usize, std::thread::Result<R>)>();
        let job_tx = self.tx.clone().unwrap();
        let f = Arc::new(f);
        let iter = inputs.into_iter();
        let start: Box<dyn FnOnce(usize) -> mpsc::Receiver<()> + Send> = Box::new(move |buffer| {
            let (tok_tx, tok_rx) = mpsc::sync_channel::<()>(buffer.max(1));
            std::thread::spawn(move || {
                let mut i = 0;
                for item in iter {
                    if tok_tx.send(()).is_err() {
                        return;
                    }
                    let (f, res_tx) = (Arc::clone(&f), res_tx.clone());
                    let job: Job = Box::new(move || {
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(item)));
                        let _ = res_tx.send((i, r));
                    });
                    if job_tx.send(job).is_err() {
                        return;
                    }
                    i += 1;
                }
            });
            tok_rx
        });
        Imap {
            start: Some(start),
            buffer: 64,
            tokens: None,
            results: res_rx,
            pending: BTreeMap::new(),
            next: 0,
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        drop(self.tx.take());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

type Starter = Box<dyn FnOnce(usize) -> mpsc::Receiver<()> + Send>;

pub struct Imap<R> {
    start: Option<Starter>,
    buffer: usize,
    tokens: Option<mpsc::Receiver<()>>,
    results: mpsc::Receiver<(usize, std::thread::Result<R>)>,
    pending: BTreeMap<usize, std::thread::Result<R>>,
    next: usize,
}

impl<R> Imap<R> {
    pub fn buffer(mut self, n: usize) -> Self {
        self.buffer = n;
        self
    }
}

impl<R> Iterator for Imap<R> {
    type Item = R;
    fn next(&mut self) -> Option<R> {
        if let Some(start) = self.start.take() {
            self.tokens = Some(start(self.buffer));
        }
        loop {
            if let Some(r) = self.pending.remove(&self.next) {
                self.next += 1;
                let _ = self.tokens.as_ref().unwrap().recv();
                return Some(match r {
                    Ok(r) => r,
                    Err(p) => std::panic::resume_unwind(p),
                });
            }
            match self.results.recv() {
                Ok((i, r)) => {
                    self.pending.insert(i, r);
                }
                Err(_) => return None,
            }
        }
    }
}
