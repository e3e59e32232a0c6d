//! `parsum`: the parallel, device-aware tree checksummer. See `parsum --help`
//! and docs/parsum.md. This file only wires the modules together.

mod app;
mod audit;
mod check;
mod cli;
mod device;
mod hash;
mod manifest;
mod output;
mod pipeline;
mod progress;
mod walk;

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(app::run())
}
