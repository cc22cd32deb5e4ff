//! The session commands: `start`, `ls`, `attach`, `send`, `logs`, `stop`. Each works on this
//! machine's agent or, with `-H`, on a paired host: they only see an [`Agent`].

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use tether_protocol::api::{Request, Response, SessionInfo};
use tether_protocol::input::InputChunk;
use tether_protocol::input::{parse_input_chunk, MAX_INPUT_CHUNK_BYTES};

use crate::cli::args::SessionCommand;
use crate::cli::attach::Ended;
use crate::cli::EXIT_TIMED_OUT;
use crate::escapes::printable;
use crate::reach::agent::Agent;

/// Terminal size for sessions started without a terminal to measure.
const DEFAULT_COLS: u16 = 120;
const DEFAULT_ROWS: u16 = 32;

pub async fn run(client: &Agent, command: SessionCommand) -> Result<ExitCode, String> {
    match command {
        SessionCommand::Start { title, cwd, detach, notify, no_notify, command } => {
            let cwd = match cwd {
                Some(cwd) => cwd,
                None => std::env::current_dir().map_err(|e| e.to_string())?.display().to_string(),
            };
            let (cols, rows) = crate::cli::attach::terminal_size().unwrap_or((DEFAULT_COLS, DEFAULT_ROWS));
            let notify = match (notify, no_notify) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            let request = Request::Start { command, title, cwd: Some(cwd), cols, rows, notify };
            let info = expect_session(client.call(&request, Vec::new()).await?)?;
            if detach || !std::io::stdin().is_terminal() {
                println!("{}", info.id);
                return Ok(ExitCode::SUCCESS);
            }
            attach_and_report(client, &info.id).await
        }
        SessionCommand::Ls { json, status, search, limit } => {
            let request = Request::List { statuses: status, search, limit };
            let Response::Sessions { sessions } = client.call(&request, Vec::new()).await?.0 else {
                return Err("unexpected answer to ls".into());
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&sessions).map_err(|e| e.to_string())?);
            } else {
                print_table(&sessions);
            }
            Ok(ExitCode::SUCCESS)
        }
        SessionCommand::Attach { id } => {
            let info = get(client, id).await?;
            attach_and_report(client, &info.id).await
        }
        SessionCommand::Send { args } => send(client, args).await,
        SessionCommand::Logs { ids, tail, keep_color, follow, wait_for_prompt, timeout } => {
            // No id: the newest session.
            let wanted = if ids.is_empty() { vec![None] } else { ids.into_iter().map(Some).collect() };
            let mut sessions = Vec::new();
            for id in wanted {
                sessions.push(get(client, id).await?.id);
            }
            let mut code = ExitCode::SUCCESS;
            if wait_for_prompt {
                for session in &sessions {
                    let request =
                        Request::WaitForPrompt { session: session.clone(), timeout_ms: timeout.as_millis() as u64 };
                    if let Err(e) = client.call(&request, Vec::new()).await {
                        eprintln!("tether: {e}");
                        code = ExitCode::from(EXIT_TIMED_OUT);
                    }
                }
            }
            crate::cli::logs::print(client, &sessions, crate::cli::logs::Options { tail, keep_color, follow }).await?;
            Ok(code)
        }
        SessionCommand::Stop { id, grace } => {
            let info = get(client, id).await?;
            let request = Request::Stop { session: info.id.clone(), grace_ms: grace.as_millis() as u64 };
            let info = expect_session(client.call(&request, Vec::new()).await?)?;
            let code = info.exit_code.map_or("?".to_owned(), |c| c.to_string());
            println!("{} {} (exit code {code})", info.id, info.status.as_str());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn expect_session(reply: (Response, Vec<u8>)) -> Result<SessionInfo, String> {
    match reply.0 {
        Response::Session { session } => Ok(session),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

async fn get(client: &Agent, id: Option<String>) -> Result<SessionInfo, String> {
    expect_session(client.call(&Request::Get { id }, Vec::new()).await?)
}

async fn attach_and_report(client: &Agent, id: &str) -> Result<ExitCode, String> {
    match crate::cli::attach::attach(client, id).await? {
        Ended::Detached => {
            eprintln!("[detached from {id}; `tether attach {id}` to return]");
            Ok(ExitCode::SUCCESS)
        }
        Ended::SessionEnded => {
            let info = get(client, Some(id.to_owned())).await?;
            let code = info.exit_code.unwrap_or(0);
            eprintln!("[session {id} {} with exit code {code}]", info.status.as_str());
            Ok(ExitCode::from(code.clamp(0, 255) as u8))
        }
    }
}

async fn send(client: &Agent, mut args: Vec<String>) -> Result<ExitCode, String> {
    let stdin_piped = !std::io::stdin().is_terminal();
    // With input following (more args, or stdin), the first argument is the session when it
    // names one. One that looks like an id but names none is an error, never typed as text.
    let mut session = None;
    if let Some(first) = args.first().cloned() {
        let is_chunk = first.starts_with("key:") || first.starts_with("hex:");
        if !is_chunk && (args.len() > 1 || stdin_piped) {
            match get(client, Some(first.clone())).await {
                Ok(info) => {
                    session = Some(info.id);
                    args.remove(0);
                }
                Err(e) if looks_like_id(&first) => return Err(e),
                Err(_) => {}
            }
        }
    }
    let chunks = args.iter().map(|a| parse_input_chunk(a)).collect::<Result<Vec<InputChunk>, String>>()?;
    let from_stdin = stdin_piped && chunks.is_empty();
    if chunks.is_empty() && !from_stdin {
        return Err("nothing to send: give text, key:NAME or hex:BYTES, or pipe stdin".into());
    }
    let session = match session {
        Some(id) => id,
        None => get(client, None).await?.id,
    };
    if !from_stdin {
        client.call(&Request::Send { session, chunks }, Vec::new()).await?;
        return Ok(ExitCode::SUCCESS);
    }
    // Piped input, however much: read and sent a chunk at a time, each answered once the
    // program has taken it, so memory stays bounded and a program that stops reading is named.
    let mut stdin = std::io::stdin().lock();
    let mut buf = vec![0u8; MAX_INPUT_CHUNK_BYTES];
    loop {
        let n = read_full(&mut stdin, &mut buf).map_err(|e| format!("reading stdin: {e}"))?;
        if n == 0 {
            return Ok(ExitCode::SUCCESS);
        }
        client.call(&Request::Write { session: session.clone(), paced: true }, buf[..n].to_vec()).await?;
    }
}

/// Fill `buf` from `reader` as far as it goes before end of input; how many bytes that was.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Session ids are short lower-case alphanumerics; text to type rarely is.
fn looks_like_id(arg: &str) -> bool {
    (1..=12).contains(&arg.len()) && arg.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn print_table(sessions: &[SessionInfo]) {
    println!("{:<8} {:<9} {:<6} {:<5} {:<19} TITLE", "ID", "STATUS", "EXIT", "INPUT", "CREATED");
    for s in sessions {
        let exit = s.exit_code.map_or("-".to_owned(), |c| c.to_string());
        let input = if s.waiting_for_input { "yes" } else { "-" };
        println!(
            "{:<8} {:<9} {:<6} {:<5} {:<19} {}",
            s.id,
            s.status.as_str(),
            exit,
            input,
            crate::time::format_time(s.created_at),
            printable(&s.title)
        );
    }
}
