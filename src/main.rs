//! The `decentd` command: parses the command line and runs a subcommand.

use clap::Parser;
use std::process::ExitCode;

use decentd::config::{Cli, Command, PluginCommand};
use decentd::{logging, startup};

/// jemalloc, not the C library's malloc: under sustained load glibc's malloc fragmented and cost a
/// third of history-read throughput (see ARCHITECTURE.md, "Allocator").
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = match args.resolve() {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("decentd: {e}");
                    return ExitCode::from(2);
                }
            };
            logging::init(config.log_format, &config.log);
            match actix_web::rt::System::new().block_on(startup::serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "decentd stopped with an error");
                    eprintln!("decentd: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Plugin(PluginCommand::Check { path }) => match decentd::plugins::check(&path) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("decentd: plugin check failed: {e}");
                ExitCode::FAILURE
            }
        },
        Command::MakeAdmin(args) => match startup::make_admin(&args) {
            Ok(message) => {
                println!("{message}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("decentd: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
