//! `tether hosts add NAME INVITE | ls | rm NAME`: remembered hosts for `-H NAME`.

use std::process::ExitCode;

use crate::cli::args::HostsAction;
use crate::paths::StateDir;
use crate::reach::hosts::Hosts;

pub fn run(state: &StateDir, action: HostsAction) -> Result<ExitCode, String> {
    let mut hosts = Hosts::load(state)?;
    match action {
        HostsAction::Add { name, invite } => {
            state.create()?;
            hosts.add(&name, &invite)?;
            println!("remembered {name}: tether ls -H {name}");
        }
        HostsAction::Rm { name } => hosts.remove(&name)?,
        HostsAction::Ls => {
            for (name, relay, host_id) in hosts.list() {
                println!("{name:<16} {host_id}  via {relay}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
