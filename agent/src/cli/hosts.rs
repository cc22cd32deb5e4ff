//! `tether hosts add NAME INVITE | ls | rm NAME`: remembered hosts for `-H NAME`; and how any
//! command finds the agent it names.

use std::process::ExitCode;

use tether_protocol::api::{Request, Response};
use tether_protocol::client::Ending;
use tether_protocol::handshake::{Credential, SALT_BYTES};
use tether_protocol::hex;
use tether_protocol::identity::{DeviceKey, HostRef, DEVICE_ID_BYTES, DEVICE_PREFIX, DEVICE_SECRET_BYTES};

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

pub async fn run(state: &StateDir, action: HostsAction) -> Result<ExitCode, String> {
    let mut hosts = Hosts::load(state)?;
    match action {
        HostsAction::Add { name, invite } => {
            Hosts::check_name(&name)?;
            let link = HostRef::parse(&invite)?;
            let kept = exchange(&link).await?;
            state.create()?;
            hosts.add(&name, &kept)?;
            match kept {
                HostRef::Device(key) => {
                    println!(
                        "remembered {name} as {} (the invite itself is not kept): tether ls -H {name}",
                        key.identity
                    )
                }
                _ => println!("remembered {name}: tether ls -H {name}"),
            }
        }
        HostsAction::Rm { name } => {
            // A device of this machine's own is forgotten on the host too, when it can be reached.
            if let HostRef::Device(key) = hosts.resolve(&name)? {
                match forget_on_host(&HostRef::Device(key.clone())).await {
                    Ok(()) => println!("{name}: the host forgot {}", key.identity),
                    Err(why) => eprintln!(
                        "tether: {name}: could not tell the host to forget {} ({why}); on the host: tether devices rm {}",
                        key.identity, key.identity
                    ),
                }
            }
            hosts.remove(&name)?
        }
        HostsAction::Ls => {
            for (name, link) in hosts.list() {
                let how = match &link {
                    HostRef::Device(key) => format!("as {}", key.identity),
                    HostRef::Invite(invite) => format!("with invite {}", invite.identity()),
                    HostRef::Address(_) => "with the password".to_owned(),
                };
                let address = link.address();
                println!("{name:<16} {}  via {}  {how}", address.host_id, address.relay);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Ask the host to forget the device `link` proves.
async fn forget_on_host(link: &HostRef) -> Result<(), String> {
    let HostRef::Device(key) = link else { return Ok(()) };
    let agent = Agent::remote(link, crate::cli::password::for_host).await.map_err(|e| e.to_string())?;
    let result = agent.call(&Request::ForgetDevice { device: key.identity.clone() }, Vec::new()).await;
    agent.close().await;
    match result {
        // The host closes a forgotten device's connections at once, this one included: that
        // close may come before the answer does, and says the same.
        Err(why) if !why.contains(tether_protocol::client::REVOKED_HINT) => Err(why),
        _ => Ok(()),
    }
}

/// Trade `link` for a device credential of this machine's own: connect with it, and if the host
/// may remember us, make a fresh secret, give the host only its verifier, and keep the secret.
/// A host that issues none (a share, an older agent) leaves the link itself to keep, said so.
async fn exchange(link: &HostRef) -> Result<HostRef, String> {
    let agent = Agent::remote(link, crate::cli::password::for_host).await.map_err(|e| e.to_string())?;
    let result = remember_this_machine(&agent, link).await;
    agent.close().await;
    match result? {
        Some(key) => Ok(HostRef::Device(key)),
        None => Ok(link.clone()),
    }
}

async fn remember_this_machine(agent: &Agent, link: &HostRef) -> Result<Option<DeviceKey>, String> {
    let (Response::HostInfo { remember, .. }, _) = agent.call(&Request::HostInfo, Vec::new()).await? else {
        return Err("unexpected answer to host_info".into());
    };
    if !remember {
        eprintln!("tether: the host issues no device credential for this link (a share?): keeping the link itself");
        return Ok(None);
    }
    let mut id = [0u8; DEVICE_ID_BYTES];
    let mut secret = [0u8; DEVICE_SECRET_BYTES];
    let mut salt = [0u8; SALT_BYTES];
    for buf in [&mut id[..], &mut secret[..], &mut salt[..]] {
        crate::random::random_bytes(buf)?;
    }
    let address = link.address();
    let identity = format!("{DEVICE_PREFIX}{}", hex::encode(&id));
    let secret = hex::encode(&secret);
    let credential =
        Credential::derive(&address.host_id, &identity, secret.as_bytes(), salt).map_err(|e| e.to_string())?;
    let request = Request::RememberDevice {
        device: identity.clone(),
        name: format!("tether CLI on {}", crate::host::sharing::hostname()),
        salt: hex::encode(&credential.salt),
        verifier: hex::encode(&credential.verifier),
    };
    agent.call(&request, Vec::new()).await?;
    Ok(Some(DeviceKey { address, identity, secret }))
}
