//! The `tokenmint` command: parses arguments and hands each subcommand to the library.

// Shipped code never slices a string at a computed byte offset: on input that
// puts a multi-byte character there, that panics (the fuzzer found one).
#![cfg_attr(not(test), warn(clippy::string_slice))]

mod commands;

use clap::Parser as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = commands::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokenmint: start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tokenmint: {e:#}");
            ExitCode::from(2)
        }
    }
}
