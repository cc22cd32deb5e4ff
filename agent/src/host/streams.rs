//! Output streams a client asks for: `attach` (live, from a byte), `logs` (whole or followed,
//! from the log once a session has ended), `watch_sessions` (the session list as it changes)
//! and `watch_opens` (`tether open` in a session, for the browsers showing it).
//! Each sends `data` frames on its stream id and, when its output ends, `control/eof`.

use std::sync::Arc;
use std::time::Duration;

use tether_protocol::api::{Request, Response};

use crate::host::service::{StreamItem, StreamTx};
use crate::host::session::{read_log, ReadError, Session};
use crate::host::sessions::{Sessions, Source};

/// Output bytes per data frame sent to clients.
const STREAM_CHUNK_BYTES: usize = 64 * 1024; // 64 KiB
/// Output gathered into one frame while it keeps coming, for at most `FLOOD_GATHER`.
const FLOOD_FRAME_BYTES: u64 = 32 * 1024; // 32 KiB
const FLOOD_GATHER: Duration = Duration::from_millis(1);
/// How often a session-list watcher looks for changes no event announces (an input-needed
/// flag cleared by new output).
const WATCH_RECHECK: Duration = Duration::from_secs(1);
/// Sessions a watcher gets when it names no limit.
const WATCH_LIMIT: usize = 200;

/// Which sessions a client may see in a list (a guest: those it started).
pub type Visible<'a> = &'a (dyn Fn(&str) -> bool + Send + Sync);

/// Serve `attach` / `logs`: answer `Streaming`, then data frames, then `eof`; and
/// `watch_sessions` (of the sessions `visible` lets through). `id` is the request's, `stream`
/// the stream to send on.
pub async fn open_stream(
    sessions: &Sessions,
    visible: Visible<'_>,
    request: Request,
    id: u64,
    stream: u32,
    tx: StreamTx,
) {
    let (session_id, from, follow, size, attach) = match request {
        Request::Attach { session, from, cols, rows } => (session, from, true, cols.zip(rows), true),
        Request::Logs { session, follow, from } => (session, Some(from.unwrap_or(0)), follow, None, false),
        Request::WatchSessions { limit } => return watch_sessions(sessions, visible, limit, id, stream, &tx).await,
        Request::WatchOpens { session } => return watch_opens(sessions, &session, id, stream, &tx).await,
        _ => return,
    };
    // Attach needs a running session; logs are served from the log once it has ended.
    let found = if attach {
        sessions.live(&session_id).map(|session| (session.info(), Source::Live(session)))
    } else {
        sessions.source(&session_id)
    };
    let (info, source) = match found {
        Ok(found) => found,
        Err((response, payload)) => {
            let _ = tx.send(StreamItem::Answer { id, answer: (response, payload) }).await;
            return;
        }
    };
    if let (Source::Live(session), Some((cols, rows))) = (&source, size) {
        let _ = session.resize(cols, rows);
    }
    let from = match (&source, from) {
        (_, Some(from)) => from,
        (Source::Live(session), None) => session.ring_oldest(),
        (Source::Log { .. }, None) => 0,
    };
    let total = info.output_bytes;
    let streaming = Response::Streaming { session: info, stream, from };
    if tx.send(StreamItem::answer(id, streaming)).await.is_err() {
        return;
    }
    let end = match source {
        Source::Live(session) => stream_live(&session, stream, from, follow, &tx).await,
        Source::Log { path } => stream_log(&path, stream, from, total, &tx).await,
    };
    if let Ok(end) = end {
        let _ = tx.send(StreamItem::Eof { stream, end }).await;
    }
}

/// The session list now and whenever it changes (see `Request::WatchSessions`). Output counts
/// alone do not make a change: a busy session would flood the watcher.
async fn watch_sessions(
    sessions: &Sessions,
    visible: Visible<'_>,
    limit: Option<usize>,
    id: u64,
    stream: u32,
    tx: &StreamTx,
) {
    let mut changes = sessions.subscribe_changes();
    if tx.send(StreamItem::answer(id, Response::Watching { stream })).await.is_err() {
        return;
    }
    let mut recheck = tokio::time::interval(WATCH_RECHECK);
    let (mut seq, mut last) = (0u64, None);
    loop {
        let (Response::Sessions { sessions: mut list }, _) =
            sessions.list(&[], None, Some(limit.unwrap_or(WATCH_LIMIT)))
        else {
            return;
        };
        list.retain(|s| visible(&s.id));
        let shape: Vec<_> =
            list.iter().map(|s| (s.id.clone(), s.status, s.waiting_for_input, s.exit_code, s.title.clone())).collect();
        if last.as_ref() != Some(&shape) {
            if send_json_line(tx, stream, &mut seq, &list).await.is_err() {
                return;
            }
            last = Some(shape);
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = recheck.tick() => {}
        }
    }
}

/// One JSON value and a newline as `data` on `stream` at `seq` (then moved past it): the shape of
/// every stream of updates (the session list, `tether open`, a watched file). `Err`: the client
/// is gone.
pub async fn send_json_line(
    tx: &StreamTx,
    stream: u32,
    seq: &mut u64,
    value: &impl serde::Serialize,
) -> Result<(), ()> {
    let mut line = serde_json::to_vec(value).unwrap_or_default();
    line.push(b'\n');
    let len = line.len() as u64;
    tx.send(StreamItem::Data { stream, seq: *seq, bytes: line }).await.map_err(|_| ())?;
    *seq += len;
    Ok(())
}

/// `tether open` in `session`, for a browser's terminal tab (see `Request::WatchOpens`), until
/// the session ends.
async fn watch_opens(sessions: &Sessions, session_id: &str, id: u64, stream: u32, tx: &StreamTx) {
    let session = match sessions.live(session_id) {
        Ok(session) => session,
        Err((response, payload)) => return drop(tx.send(StreamItem::Answer { id, answer: (response, payload) }).await),
    };
    let mut opens = session.subscribe_opens();
    let mut finished = session.subscribe_finished();
    if tx.send(StreamItem::answer(id, Response::Watching { stream })).await.is_err() {
        return;
    }
    let mut seq = 0u64;
    loop {
        if *finished.borrow_and_update() {
            break;
        }
        tokio::select! {
            paths = opens.recv() => match paths {
                Ok(paths) => {
                    if send_json_line(tx, stream, &mut seq, &*paths).await.is_err() {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            changed = finished.changed() => if changed.is_err() { break },
        }
    }
    let _ = tx.send(StreamItem::Eof { stream, end: seq }).await;
}

/// Follow a live session from `from`; with `follow` false, stop at the current end.
/// Returns the end sequence number reached.
async fn stream_live(session: &Arc<Session>, stream: u32, from: u64, follow: bool, tx: &StreamTx) -> Result<u64, ()> {
    let mut end_rx = session.subscribe_end();
    let mut finished = session.subscribe_finished();
    let mut cursor = from;
    let mut last_sent = None::<tokio::time::Instant>;
    loop {
        let mut done = *finished.borrow_and_update();
        let mut end = *end_rx.borrow_and_update();
        // Output that keeps coming (a flood) is gathered a moment into bigger frames, which a
        // client takes for much less than many small ones; a lone burst (an echo) goes at once.
        if !done
            && end.saturating_sub(cursor) < FLOOD_FRAME_BYTES
            && last_sent.is_some_and(|at| at.elapsed() < FLOOD_GATHER)
        {
            tokio::time::sleep(FLOOD_GATHER).await;
            done = *finished.borrow_and_update();
            end = *end_rx.borrow_and_update();
        }
        if cursor < end {
            last_sent = Some(tokio::time::Instant::now());
        }
        while cursor < end {
            // Bytes still in memory are read at once; older ones come from the log on disk, on
            // a blocking thread, so a big replay never holds up another client's keystrokes.
            let read = match cursor < session.ring_oldest() {
                false => session.read_from(cursor, STREAM_CHUNK_BYTES),
                true => {
                    let session = session.clone();
                    tokio::task::spawn_blocking(move || session.read_from(cursor, STREAM_CHUNK_BYTES))
                        .await
                        .unwrap_or_else(|e| Err(ReadError::Failed(e.to_string())))
                }
            };
            let chunk = match read {
                Ok(chunk) if chunk.is_empty() => return Err(()), // cannot happen below `end`
                Ok(chunk) => chunk,
                // Never logged and gone from the ring: say so, and go on after the gap.
                Err(ReadError::Lost { to }) => {
                    tx.send(skip(stream, cursor, to)).await.map_err(|_| ())?;
                    cursor = to;
                    continue;
                }
                Err(ReadError::Failed(why)) => {
                    eprintln!("tether daemon: session {}: {why}", session.id);
                    return Err(());
                }
            };
            let len = chunk.len() as u64;
            tx.send(StreamItem::Data { stream, seq: cursor, bytes: chunk }).await.map_err(|_| ())?;
            cursor += len;
        }
        if done || !follow {
            return Ok(cursor);
        }
        tokio::select! {
            changed = end_rx.changed() => changed.map_err(|_| ())?,
            changed = finished.changed() => changed.map_err(|_| ())?,
        }
    }
}

/// Send a finished session's log from `from` to its end, `total` (the session's output bytes).
/// A log that ends short of that (it could not be written) ends with a skip over what it lacks.
async fn stream_log(path: &std::path::Path, stream: u32, from: u64, total: u64, tx: &StreamTx) -> Result<u64, ()> {
    let mut cursor = from;
    loop {
        let path_owned = path.to_path_buf();
        let read = tokio::task::spawn_blocking(move || read_log(&path_owned, cursor, STREAM_CHUNK_BYTES)).await;
        let chunk = match read.unwrap_or_else(|e| Err(ReadError::Failed(e.to_string()))) {
            Ok(chunk) => chunk,
            Err(_) if cursor == 0 && total == 0 => Vec::new(), // no output was ever written
            Err(_) => return Err(()),
        };
        if chunk.is_empty() {
            if cursor < total {
                tx.send(skip(stream, cursor, total)).await.map_err(|_| ())?;
                cursor = total;
            }
            return Ok(cursor);
        }
        let len = chunk.len() as u64;
        tx.send(StreamItem::Data { stream, seq: cursor, bytes: chunk }).await.map_err(|_| ())?;
        cursor += len;
    }
}

fn skip(stream: u32, from: u64, to: u64) -> StreamItem {
    StreamItem::Skip { stream, from, to }
}
