//! `tether notify on|off [ID]` (locally, or `-H` on a paired host) and `tether notify test`.

use std::process::ExitCode;

use tether_protocol::api::{Request, Response};

use crate::cli::args::NotifyAction;
use crate::cli::hosts::{dial, resolve};
use crate::paths::StateDir;

pub async fn run(state: &StateDir, host: Option<&str>, action: NotifyAction) -> Result<ExitCode, String> {
    let agent = dial(state, &resolve(state, host)?).await?;
    let result = match action {
        NotifyAction::On { id } => set(&agent, id, true).await,
        NotifyAction::Off { id } => set(&agent, id, false).await,
        NotifyAction::Test => test(&agent).await,
    };
    agent.close().await;
    result
}

async fn set(agent: &crate::reach::agent::Agent, id: Option<String>, on: bool) -> Result<ExitCode, String> {
    let (Response::Session { session }, _) = agent.call(&Request::Get { id }, Vec::new()).await? else {
        return Err("unexpected answer to get".into());
    };
    agent.call(&Request::SetNotify { session: session.id.clone(), on }, Vec::new()).await?;
    println!("{}: notifications {}", session.id, if on { "on" } else { "off" });
    Ok(ExitCode::SUCCESS)
}

async fn test(agent: &crate::reach::agent::Agent) -> Result<ExitCode, String> {
    let (Response::Pushed { sent, dropped, failed }, _) = agent.call(&Request::PushTest, Vec::new()).await? else {
        return Err("unexpected answer to notify test".into());
    };
    println!("pushed to {sent} browser(s); {dropped} subscription(s) gone and dropped");
    for why in &failed {
        eprintln!("tether: push failed: {}", crate::escapes::printable(why));
    }
    Ok(if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
