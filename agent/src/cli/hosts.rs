//! `tether hosts add NAME INVITE | ls | rm NAME`: remembered hosts for `-H NAME`; and how any
//! command finds the agent it names.

use std::process::ExitCode;

use tether_protocol::client::Ending;
use tether_protocol::identity::HostRef;

use crate::cli::args::HostsAction;
use crate::paths::StateDir;
use crate::reach::agent::Agent;
use crate::reach::hosts::Hosts;
use crate::reach::local::LocalClient;

/// The way to a host named by an invite or a saved name; `None` (this machine's daemon) for no
/// name. A name nobody saved fails here, at once, before any dialling or retrying.
pub fn resolve(state: &StateDir, host: Option<&str>) -> Result<Option<HostRef>, String> {
    host.map(|name| Hosts::load(state)?.resolve(name)).transpose()
}

/// Reach the agent `resolve` found (starting the local daemon if need be). A refusal (a wrong
/// secret, a revoked invite) is final; anything else may be worth another try.
pub async fn dial(state: &StateDir, link: &Option<HostRef>) -> Result<Agent, Ending> {
    match link {
        None => Ok(Agent::Local(LocalClient::connect(state, true).await.map_err(Ending::Lost)?)),
        Some(link) => Agent::remote(link, crate::cli::password::for_host).await,
    }
}

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
