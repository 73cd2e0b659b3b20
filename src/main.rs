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
            let reload = (*args).clone();
            let config = match args.resolve() {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("decentd: {e}");
                    return ExitCode::from(2);
                }
            };
            logging::init(config.log_format, &config.log);
            match actix_web::rt::System::new().block_on(startup::serve(config, Some(reload))) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "decentd stopped with an error");
                    eprintln!("decentd: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Reindex(args) => answer(startup::reindex(&args)),
        Command::ResetPassword(args) => answer(startup::reset_password_link(&args)),
        Command::MakeAdmin(args) => answer(startup::make_admin(&args)),
        Command::Backup(args) => answer(decentd::backup::backup_command(&args.data, &args.to)),
        Command::Restore(args) => answer(decentd::backup::restore_command(&args.from, &args.data)),
        Command::Export(args) => answer(decentd::export::export_command(&args.data, &args.to)),
        Command::Import(args) => answer(decentd::export::import_command(&args.from, &args.data)),
        Command::Migrate(args) => answer(decentd::migrate::migrate_command(
            &args.from,
            &args.to,
            args.uploads.as_deref(),
        )),
        Command::Plugin(PluginCommand::Check { path }) => {
            answer(decentd::plugins::check(&path).map_err(|e| format!("plugin check failed: {e}")))
        }
    }
}

/// Ends an offline command: its answer on stdout, or its error on stderr and exit status 1.
fn answer(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(message) => {
            print_out(&message);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("decentd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a command's answer. A reader that went away (`decentd plugin check DIR | head -1`)
/// is not an error of ours: the rest of the answer is dropped quietly instead of panicking.
fn print_out(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}
