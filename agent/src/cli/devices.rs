//! `tether devices ls [--json] | rm ID | rename ID NAME`: the browsers and machines this host
//! remembers (see `host::devices`).

use std::process::ExitCode;

use tether_protocol::api::{Request, Response};

use crate::cli::args::DevicesAction;
use crate::escapes::printable;
use crate::reach::local::LocalClient;
use crate::time::format_time;

pub async fn run(client: &LocalClient, action: DevicesAction) -> Result<ExitCode, String> {
    match action {
        DevicesAction::Ls { json } => list(client, json).await,
        DevicesAction::Rm { id } => {
            let (Response::Revoked { identity, stopped }, _) =
                client.call(&Request::ForgetDevice { device: id }, Vec::new()).await?
            else {
                return Err("unexpected answer to devices rm".into());
            };
            println!("{identity} forgotten; its connections were closed");
            if !stopped.is_empty() {
                println!("stopped the sessions it started: {}", stopped.join(" "));
            }
            Ok(ExitCode::SUCCESS)
        }
        DevicesAction::Rename { id, name } => {
            client.call(&Request::RenameDevice { device: id, name }, Vec::new()).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn list(client: &LocalClient, json: bool) -> Result<ExitCode, String> {
    let (Response::Devices { devices }, _) = client.call(&Request::ListDevices, Vec::new()).await? else {
        return Err("unexpected answer to devices ls".into());
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&devices).map_err(|e| e.to_string())?);
        return Ok(ExitCode::SUCCESS);
    }
    if devices.is_empty() {
        println!("no remembered devices (a browser asks once it is in; `tether hosts add` on another machine)");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<23} {:<28} {:<16} {:<19} {:<19} CONNECTED", "ID", "NAME", "VIA", "CREATED", "LAST SEEN");
    for device in devices {
        let seen = match device.connected {
            0 => format_time(device.last_seen),
            _ => "now".to_owned(),
        };
        println!(
            "{:<23} {:<28} {:<16} {:<19} {seen:<19} {}",
            device.id,
            printable(&device.name),
            device.via,
            format_time(device.created_at),
            device.connected
        );
    }
    Ok(ExitCode::SUCCESS)
}
