//! `spindle_bench [--rounds 3] [--files 360] [--parsum PATH] [--b3sum PATH]
//!                [--work DIR] [--chart FILE.svg] [--quick]`
//!
//! Measures parsum (adaptive and `--jobs 1/2/8`) and its peers on a
//! simulated spindle and a simulated flash device (see
//! `parpool_bench::spindle`), prints the report in markdown and writes the
//! chart. Needs root or fusermount3, and /dev/fuse. parsum defaults to the
//! one beside this binary (`cargo build --release -p parsum`), b3sum to
//! `$PARSUM_B3SUM`, then `b3sum` in PATH.

use parpool_bench::spindle::bench::{self, BenchOpts};
use parpool_bench::spindle::{Mode, Params};
use std::path::PathBuf;

const USAGE: &str = "usage: spindle_bench [--rounds N] [--files N] [--parsum PATH] \
                     [--b3sum PATH] [--work DIR] [--chart FILE.svg] [--quick]";

fn main() {
    if let Err(e) = run() {
        eprintln!("spindle_bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from))
        .unwrap_or_default();
    let mut o = BenchOpts {
        rounds: 3,
        files: 360,
        parsum: exe_dir.join("parsum"),
        b3sum: std::env::var_os("PARSUM_B3SUM").map_or_else(|| "b3sum".into(), PathBuf::from),
        work: std::env::temp_dir().join("spindle-bench"),
        devices: vec![Params::new(Mode::Spindle), Params::new(Mode::Flash)],
    };
    let mut chart = None;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .ok_or_else(|| format!("{a} needs a value\n{USAGE}"))
        };
        let count = |v: &String| {
            v.parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{a} {v}: expected a positive integer"))
        };
        match a.as_str() {
            "--rounds" => o.rounds = count(val()?)?,
            "--files" => o.files = count(val()?)?,
            "--parsum" => o.parsum = val()?.into(),
            "--b3sum" => o.b3sum = val()?.into(),
            "--work" => o.work = val()?.into(),
            "--chart" => chart = Some(PathBuf::from(val()?)),
            "--quick" => {
                o.rounds = 1;
                o.files = 40;
            }
            _ => return Err(format!("unknown argument {a}\n{USAGE}")),
        }
    }
    if !o.parsum.is_file() {
        return Err(format!(
            "no parsum at {} (cargo build --release -p parsum, or --parsum PATH)",
            o.parsum.display()
        ));
    }
    let load = bench::load_average();
    let (total, results) = bench::measure(&o, |line| eprintln!("{line}"))?;
    println!("{}", bench::header(&o, total, &load));
    print!("{}", bench::tables(&results));
    println!("Load average at end: {}.", bench::load_average());
    if let Some(path) = chart {
        bench::chart(&path, &results)?;
        eprintln!("chart written to {}", path.display());
    }
    Ok(())
}
