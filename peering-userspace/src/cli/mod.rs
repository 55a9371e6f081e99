//! `peerctl`: an AWS-CLI-style client of the API (see [`crate::api`]).
//!
//! Exit codes follow the AWS CLI: 0 success, 252 usage error (bad command
//! line), 253 configuration error (no region or token, unknown profile,
//! unreadable config file), 254 the service refused the call, 255 any other
//! failure (connection refused, timeout, unexpected answer).

pub mod args;
pub mod client;
pub mod output;
pub mod profile;
pub mod sg_args;
pub mod shorthand;

use crate::api::actions::REGIONLESS_ACTIONS;
use crate::cli::args::Cli;
use crate::cli::client::CallError;
use crate::cli::profile::{Overrides, ENV_TOKEN};
use clap::Parser;
use std::ffi::OsString;

pub const EXIT_USAGE: i32 = 252;
pub const EXIT_CONFIG: i32 = 253;
pub const EXIT_SERVICE: i32 = 254;
pub const EXIT_OTHER: i32 = 255;

/// Entry point of the binary: parses the process arguments and returns the
/// exit code.
pub fn main() -> i32 {
    run(std::env::args_os())
}

pub fn run<I, T>(argv: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { 0 };
        }
    };
    let request = match cli.command.request() {
        Ok(r) => r,
        Err(msg) => {
            eprintln!("peerctl: error: {msg}");
            return EXIT_USAGE;
        }
    };
    let over = Overrides {
        profile: cli.profile,
        endpoint_url: cli.endpoint_url,
        ca_file: cli.ca_file,
        region: cli.region,
        output: cli.output,
        token: std::env::var(ENV_TOKEN).ok(),
    };
    let settings = match profile::resolve(over, profile::config_path()) {
        Ok(s) => s,
        Err(msg) => {
            eprintln!("peerctl: {msg}");
            return EXIT_CONFIG;
        }
    };
    if let Some(ca) = &settings.ca_file {
        if let Err(e) = crate::https::load_ca(ca) {
            eprintln!("peerctl: {e:#}");
            return EXIT_CONFIG;
        }
    }
    let Some(token) = settings.token.as_deref() else {
        eprintln!(
            "peerctl: Unable to locate credentials. Set PEERING_TOKEN or `token` in the profile."
        );
        return EXIT_CONFIG;
    };
    if settings.region.is_none() && !REGIONLESS_ACTIONS.contains(&request.action) {
        eprintln!(
            "peerctl: You must specify a region. Use --region, PEERING_REGION or `region` in the profile."
        );
        return EXIT_CONFIG;
    }
    match client::call(
        &settings.endpoint_url,
        settings.ca_file.as_deref(),
        token,
        settings.region.as_deref(),
        &request,
    ) {
        Ok(value) => {
            let text = output::render(&value, settings.output);
            // A closed stdout (e.g. `| head`) is not an error of the call.
            match crate::out::print(&text) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("peerctl: writing the output: {e}");
                    1
                }
            }
        }
        Err(CallError::Service { code, message, .. }) => {
            eprintln!(
                "\nAn error occurred ({code}) when calling the {} operation: {message}",
                request.action
            );
            EXIT_SERVICE
        }
        Err(CallError::Transport(msg)) => {
            eprintln!("\n{msg}");
            EXIT_OTHER
        }
    }
}
