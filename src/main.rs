//! `plugpos`: parse the command line, run the command, report failure in one line.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc. With glibc, the server held 147 MiB after 32 cashiers had
/// logged in and sold (each argon2id hash takes 19 MiB, and glibc keeps it in a per-thread arena),
/// at the edge of the 150 MB target; with mimalloc 49 MiB, idle the same (docs/PERFORMANCE.md).
/// `no_thp`: with transparent huge pages, as on these machines, mimalloc's idle memory grew by 11 MiB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = plugpos::core::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("plugpos: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(plugpos::core::cli::run(cli, plugpos::plugs::modules)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the whole cause chain, joined.
            let message = format!("{e:#}").replace('\n', " ");
            eprintln!("plugpos: error: {message}");
            ExitCode::FAILURE
        }
    }
}
