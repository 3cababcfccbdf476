//! `plugpos`: parse the command line, run the command, report failure in one line.

use std::process::ExitCode;

use clap::Parser;

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
