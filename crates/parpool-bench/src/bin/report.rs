//! `cargo run --release -p parpool-bench --bin report [-- --quick]`
//!
//! Measures parpool and its peers on W1..W9, prints the markdown report and
//! writes it, with the chart, to `docs/bench/<machine kind>/` (e.g.
//! `docs/bench/amd-epyc/`), or to `--out DIR`.

use parpool_bench::{chart, child, run, Options};
use std::path::PathBuf;

const USAGE: &str =
    "usage: report [--quick] [--only W1,W2,..] [--out DIR] [--no-write] [--settle-ms MS]";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        child::main(&args[1..]);
        return;
    }
    let mut opts = Options {
        quick: false,
        only: Vec::new(),
        settle: None,
    };
    let mut out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/bench");
    let mut write = true;
    let mut default_out = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => opts.quick = true,
            "--no-write" => write = false,
            "--only" => {
                let list = it.next().unwrap_or_else(|| die("--only needs a list"));
                opts.only = list.split(',').map(|s| s.trim().to_string()).collect();
            }
            "--settle-ms" => {
                let ms = it.next().and_then(|s| s.parse().ok());
                let ms = ms.unwrap_or_else(|| die("--settle-ms needs a number"));
                opts.settle = Some(std::time::Duration::from_millis(ms));
            }
            "--out" => {
                out = PathBuf::from(it.next().unwrap_or_else(|| die("--out needs a dir")));
                default_out = false;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            other => die(&format!("unknown argument `{other}`")),
        }
    }
    let report = run(&opts);
    let md = report.to_markdown();
    println!("{md}");
    if default_out {
        // One directory per machine kind: reports from different CPUs
        // live side by side (docs/bench/README.md lists them).
        out = out.join(report.machine.kind());
    }
    if write {
        std::fs::create_dir_all(&out).unwrap_or_else(|e| die(&format!("{}: {e}", out.display())));
        let md_path = out.join("report.md");
        std::fs::write(&md_path, &md)
            .unwrap_or_else(|e| die(&format!("{}: {e}", md_path.display())));
        let svg = out.join("chart.svg");
        if let Err(e) = chart::write(&svg, &report.sections) {
            die(&format!("{}: {e}", svg.display()));
        }
        eprintln!("wrote {} and {}", md_path.display(), svg.display());
        if default_out && opts.only.is_empty() {
            update_readme(&report);
        }
    }
    let failed = report
        .targets
        .iter()
        .filter(|t| t.verdict() == parpool_bench::targets::Verdict::Fail)
        .count();
    eprintln!("{failed} target(s) failed");
}

/// Replaces the block between the README's report markers with this run's
/// summary, so one command regenerates the numbers the README shows.
fn update_readme(report: &parpool_bench::report::Report) {
    const BEGIN: &str = "<!-- report:begin -->";
    const END: &str = "<!-- report:end -->";
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        return;
    };
    let dir = format!("../../docs/bench/{}", report.machine.kind());
    let summary = report.summary_markdown(&format!("{dir}/chart.svg"), &format!("{dir}/report.md"));
    let new = format!("{}{BEGIN}\n{summary}{}", &text[..b], &text[e..]);
    match std::fs::write(&path, new) {
        Ok(()) => eprintln!("updated {}", path.display()),
        Err(e) => eprintln!("could not update {}: {e}", path.display()),
    }
}

fn die(msg: &str) -> ! {
    eprintln!("report: {msg}\n{USAGE}");
    std::process::exit(2);
}
