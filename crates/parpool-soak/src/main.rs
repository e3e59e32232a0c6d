//! `parpool-soak [--seconds N] [--seed S] [--watchdog SECS] [--skip F,..] [--ops OP,..]`
//!
//! Exit status: 0 if nothing was found, 1 on any failure, 2 on a hang, 3 on
//! an allocation so large it would abort the process (see the library's
//! allocator guard).

use parpool_soak::{print_totals, run, Config, OP_NAMES, SKIPPABLE};
use std::time::Duration;

const USAGE: &str =
    "usage: parpool-soak [--seconds N] [--seed S] [--watchdog SECS] [--skip F,..] [--ops OP,..]
  --seconds N      run for N seconds (default 60)
  --seed S         the run's seed (default: from the clock; always printed)
  --watchdog SECS  no progress for SECS seconds is a hang: exit 2 (default 30)
  --skip F,..      leave features out, to look past a known bug:";

fn usage() -> String {
    let mut s = USAGE.to_owned();
    for (name, what) in SKIPPABLE {
        s.push_str(&format!("\n                     {name}: {what}"));
    }
    s.push_str("\n  --ops OP,..      run only these operations: ");
    s.push_str(&OP_NAMES.join(", "));
    s
}

fn parse() -> Result<Config, String> {
    let mut cfg = Config::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        if key == "-h" || key == "--help" {
            println!("{}", usage());
            std::process::exit(0);
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{key} needs a value"))
        };
        match key.as_str() {
            "--seconds" => {
                let v = value()?;
                let s: f64 = v.parse().map_err(|_| format!("bad --seconds: {v}"))?;
                if !(s >= 0.0 && s.is_finite()) {
                    return Err(format!("bad --seconds: {v}"));
                }
                cfg.duration = Duration::from_secs_f64(s);
            }
            "--seed" => {
                let v = value()?;
                cfg.seed = v.parse().map_err(|_| format!("bad --seed: {v}"))?;
            }
            "--watchdog" => {
                let v = value()?;
                let s: u64 = v.parse().map_err(|_| format!("bad --watchdog: {v}"))?;
                cfg.watchdog = Duration::from_secs(s.max(1));
            }
            "--skip" => {
                for f in value()?.split(',').filter(|f| !f.is_empty()) {
                    if !SKIPPABLE.iter().any(|(name, _)| *name == f) {
                        return Err(format!("unknown --skip feature: {f}"));
                    }
                    cfg.skip.push(f.to_owned());
                }
            }
            "--ops" => {
                for op in value()?.split(',').filter(|op| !op.is_empty()) {
                    if !OP_NAMES.contains(&op) {
                        return Err(format!("unknown --ops operation: {op}"));
                    }
                    cfg.ops.push(op.to_owned());
                }
            }
            _ => return Err(format!("unknown argument: {arg}")),
        }
    }
    Ok(cfg)
}

fn main() {
    let cfg = match parse() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("parpool-soak: {e}\n{}", usage());
            std::process::exit(64);
        }
    };
    let summary = run(cfg);
    print_totals();
    println!("{summary}");
    std::process::exit(if summary.passed() { 0 } else { 1 });
}
