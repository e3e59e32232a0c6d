//! `parsum`: the parallel, device-aware tree checksummer. See `parsum --help`
//! and docs/parsum.md. The code is in the library (`lib.rs`); this file only
//! runs it.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(parsum::app::run())
}
