//! `spindle MODE SOURCE_DIR MOUNTPOINT [--seek-ms 8] [--mb-s 150] [--channels 4]`
//!
//! Serves SOURCE_DIR read-only at MOUNTPOINT as a simulated device (MODE is
//! `spindle` or `flash`, see `parpool_bench::spindle::model`) until SIGINT,
//! SIGTERM or SIGHUP, or until someone unmounts it; then unmounts and
//! prints what the model served.

use parpool_bench::spindle::{Mode, Mounted, Params};
use std::path::PathBuf;
use std::time::Duration;

const USAGE: &str = "usage: spindle spindle|flash SOURCE_DIR MOUNTPOINT \
                     [--seek-ms 8 (0..=60000)] [--mb-s 150 (0.001..=1e6)] [--channels 4 (1..=1024)]";

fn parse(args: &[String]) -> Result<(Params, PathBuf, PathBuf), String> {
    let mut pos = Vec::new();
    let mut it = args.iter();
    let mut opts: Vec<(&str, f64)> = Vec::new();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seek-ms" | "--mb-s" | "--channels" => {
                let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
                let n: f64 = v
                    .parse()
                    .ok()
                    .filter(|n: &f64| n.is_finite() && *n >= 0.0)
                    .ok_or_else(|| format!("{a} {v}: expected a non-negative number"))?;
                opts.push((a.as_str(), n));
            }
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            _ => pos.push(a.clone()),
        }
    }
    let [mode, source, mnt] = <[String; 3]>::try_from(pos)
        .map_err(|_| "expected MODE SOURCE_DIR MOUNTPOINT".to_string())?;
    let mut p = Params::new(mode.parse::<Mode>()?);
    for (name, n) in opts {
        match name {
            // Bounded so that every read's cost stays a sane Duration.
            "--seek-ms" if n <= 60_000.0 => p.seek = Duration::from_secs_f64(n / 1e3),
            "--mb-s" if (0.001..=1e6).contains(&n) => p.bytes_per_sec = n * 1e6,
            "--channels" if (1.0..=1024.0).contains(&n) && n.fract() == 0.0 => {
                p.channels = n as usize
            }
            _ => return Err(format!("{name} {n}: out of range")),
        }
    }
    Ok((p, source.into(), mnt.into()))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (params, source, mnt) = match parse(&args) {
        Ok(x) => x,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("spindle: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    // Block the stop signals before any thread starts, so that every
    // thread inherits the mask and only the wait below receives them.
    // SAFETY: [1] `set` is a valid, initialised sigset_t on our stack;
    // [2] sigemptyset/sigaddset/pthread_sigmask only read and write it.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    let m = match Mounted::mount(&source, &mnt, params) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("spindle: {e}");
            std::process::exit(1);
        }
    };
    eprintln!(
        "spindle: serving {} at {} ({}); stop with Ctrl-C or kill",
        source.display(),
        mnt.display(),
        params.describe()
    );
    let timeout = libc::timespec {
        tv_sec: 0,
        tv_nsec: 200_000_000,
    };
    while m.is_serving() {
        // SAFETY: `set` is the initialised set above; a null siginfo is allowed.
        let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &timeout) };
        if sig > 0 {
            break;
        }
    }
    let s = m.served();
    if let Err(e) = m.unmount() {
        eprintln!("spindle: {e}");
        std::process::exit(1);
    }
    eprintln!(
        "spindle: unmounted; served {} reads, {} seeks, {} bytes",
        s.reads, s.seeks, s.bytes
    );
}
