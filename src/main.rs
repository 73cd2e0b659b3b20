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
        Command::Reindex(args) => match startup::reindex(&args) {
            Ok(message) => {
                print_out(&message);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("decentd: {e}");
                ExitCode::FAILURE
            }
        },
        Command::ResetPassword(args) => match startup::reset_password_link(&args) {
            Ok(message) => {
                print_out(&message);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("decentd: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Plugin(PluginCommand::Check { path }) => match decentd::plugins::check(&path) {
            Ok(summary) => {
                print_out(&summary);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("decentd: plugin check failed: {e}");
                ExitCode::FAILURE
            }
        },
        Command::MakeAdmin(args) => match startup::make_admin(&args) {
            Ok(message) => {
                print_out(&message);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("decentd: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Prints a command's answer. A reader that went away (`decentd plugin check DIR | head -1`)
/// is not an error of ours: the rest of the answer is dropped quietly instead of panicking.
fn print_out(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}
