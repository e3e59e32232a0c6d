//! `parsum`: the parallel, device-aware tree checksummer. See `parsum --help`
//! and docs/parsum.md. The code is in the library (`lib.rs`); this file only
//! runs it and turns its [`parsum::exit::Exit`] into the process status.

fn main() -> std::process::ExitCode {
    parsum::app::run().into()
}
