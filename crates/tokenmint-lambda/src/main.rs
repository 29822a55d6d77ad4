//! The `bootstrap` binary for AWS Lambda (`provided.al2023`): JSON logs to stdout, then `tokenmint::lambda::run`; every decision is in the library.

// Shipped code never slices a string at a computed byte offset: on input that
// puts a multi-byte character there, that panics (the fuzzer found one).
#![cfg_attr(not(test), warn(clippy::string_slice))]

use std::process::ExitCode;
use std::sync::Arc;
use tokenmint::lambda::{self, Env};

fn main() -> ExitCode {
    let env = Env::from_process();
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_max_level(lambda::config::initial_log_level(&env).filter())
        .with_writer(std::io::stdout)
        .init();
    // One invocation at a time per environment: a single thread is enough.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("bootstrap: start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(lambda::run(&env, Arc::new(tokenmint::clock::SystemClock))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bootstrap: {error}");
            ExitCode::FAILURE
        }
    }
}
