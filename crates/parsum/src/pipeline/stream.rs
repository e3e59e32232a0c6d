//! The consumer's side: a [`Stream`] is one producer's ordered results,
//! drained into a [`Sink`] in exactly the order the producer sent them,
//! with sub-producers' streams drained in place.

use std::collections::HashMap;
use std::sync::mpsc::Receiver;

use super::{Order, Sink};
use crate::hash::{hash_file, FileHash, HashError};

/// The ordered results of one producer.
pub struct Stream<T, M> {
    pub(super) rx: Receiver<Order<T, M>>,
    pub(super) handle: Option<std::thread::JoinHandle<()>>,
}

impl<T, M> Stream<T, M> {
    /// Feeds every result and message to `sink`, in producer order, until
    /// the sink is [stopped](Sink::stopped).
    pub fn drain(mut self, sink: &mut dyn Sink<T, M>) {
        let mut results = None;
        // First result of each multiply-linked file, for its other names.
        let mut links: HashMap<(u64, u64), Result<FileHash, String>> = HashMap::new();
        for o in self.rx.iter() {
            if sink.stopped() {
                // Subtle: no join: the producer may walk on for a long
                // time; the process ends without it.
                return;
            }
            match o {
                Order::Start(rx) => results = Some(rx),
                Order::Sub(stream) => stream.drain(sink),
                Order::Batch => {
                    let rx: &Receiver<_> = results.as_ref().expect("Start precedes Batch");
                    let batch = rx
                        .recv()
                        .expect("a device pool stopped: a hashing thread panicked");
                    for (item, r) in batch {
                        if item.stat.nlink > 1 {
                            let keep = r.as_ref().map(Clone::clone).map_err(ToString::to_string);
                            links.insert((item.stat.dev, item.stat.ino), keep);
                        }
                        sink.done(item, r);
                    }
                    sink.batch_end();
                }
                Order::Alias(mut item) => {
                    let r = match links.get(&(item.stat.dev, item.stat.ino)) {
                        Some(Ok(h)) => {
                            // The first name's result. If this name had a
                            // result of its own carried over, and they
                            // differ, the file is not what this name's
                            // entry says (the first name was read): the
                            // consumer must compare, not trust.
                            let same =
                                |k: &FileHash| k.digests.iter().all(|d| h.digests.contains(d));
                            if item.known.as_ref().is_some_and(|k| !same(k)) {
                                item.known = None;
                            }
                            Ok(h.clone())
                        }
                        Some(Err(e)) => Err(HashError::Io(std::io::Error::other(format!(
                            "hard link to a file that failed: {e}"
                        )))),
                        None => match &item.known {
                            Some(h) => Ok(h.clone()),
                            None => hash_file(&item.path, item.algos, item.hash_opts(None)),
                        },
                    };
                    sink.done(item, r);
                }
                Order::Msg(m) => sink.msg(m),
            }
        }
        if let Some(h) = self.handle.take() {
            if let Err(p) = h.join() {
                std::panic::resume_unwind(p);
            }
        }
    }
}
