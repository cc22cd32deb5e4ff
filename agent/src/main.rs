//! `tether`: the host agent and the CLI peer in one binary. Session management and pairing
//! subcommands are being built; this is the entry point they hang from.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "tether",
    version,
    about = "Reach this machine's terminal from any browser, end-to-end encrypted",
    long_about = "Reach this machine's terminal from any browser, end-to-end encrypted.\n\n\
                  Session and pairing commands (daemon, start, ls, attach, send, logs, stop, pair, exec) \
                  are not in this build yet."
)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!("tether {}: no command given; see `tether --help`", env!("CARGO_PKG_VERSION"));
    std::process::exit(2);
}
