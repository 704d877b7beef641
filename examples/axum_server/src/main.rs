//! `cargo run -p firstcome-server -- --help`

use std::process::ExitCode;

use firstcome_server::config::Config;

// glibc's malloc and free were a fifth of an accepted apply's CPU; mimalloc cuts the
// API's CPU per accepted apply to about 0.9x (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // The log goes to stderr: stdout is for what a command prints (the JSON reports of
    // `settle`, `dead-letters`...), which a warning must not corrupt.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,rdkafka=warn".into()),
        )
        .init();
    let config = Config::from_command_line();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if config.runtime_threads > 0 {
        runtime.worker_threads(config.runtime_threads);
    }
    let runtime = match runtime.build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match config.command.clone() {
            Some(command) => firstcome_server::run_command(config, command).await,
            None => firstcome_server::run(config, firstcome_server::shutdown_signal()).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
