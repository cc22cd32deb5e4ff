//! Streams read in memory: one to its end (a directory's listing for Files, a file for the
//! editor: open, reload, compare), or one of JSON lines as they come (the session list, `tether
//! open`, a watched file). Big downloads go to disk through `download` instead.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use tether_protocol::api::{Request, Response};
use tether_protocol::fs::{FsRequest, FsResponse};
use yew::Callback;

use crate::link::{Link, StreamEvent};

/// Open the stream `request` asks for; `check` looks at its answer, `take` at every byte as it
/// comes (credited back at once). An `Err` from either lets the stream go and is the result;
/// otherwise the answer, once the stream has ended.
pub async fn to_end(
    link: &Link,
    request: &Request,
    check: impl FnOnce(&Response) -> Result<(), String>,
    take: impl FnMut(&[u8]) -> Result<(), String> + 'static,
) -> Result<Response, String> {
    let (done_tx, done) = futures_channel::oneshot::channel::<Result<(), String>>();
    let done_tx = Rc::new(Cell::new(Some(done_tx)));
    let take = RefCell::new(take);
    let owner = {
        let (link, done_tx) = (link.clone(), Rc::clone(&done_tx));
        let finish = move |result: Result<(), String>| {
            if let Some(tx) = done_tx.take() {
                let _ = tx.send(result);
            }
        };
        Callback::from(move |(stream, event): (u32, StreamEvent)| match event {
            StreamEvent::Data { bytes, .. } => {
                link.consumed(stream, bytes.len() as u64);
                if let Err(why) = (take.borrow_mut())(&bytes) {
                    link.forget_stream(stream);
                    finish(Err(why));
                }
            }
            StreamEvent::Eof => finish(Ok(())),
            StreamEvent::Skipped { .. } => finish(Err("the host skipped part of the stream".into())),
            StreamEvent::Lost { why } => finish(Err(format!("the connection was lost before the end: {why}"))),
            StreamEvent::Writable | StreamEvent::Resumed { .. } => {}
        })
    };
    let (answer, stream) = link.open_stream(request, owner).await?;
    if let Err(why) = check(&answer) {
        link.forget_stream(stream);
        return Err(why);
    }
    done.await.map_err(|_| "the connection was lost before the end".to_owned())??;
    Ok(answer)
}

/// The whole of the file at `path`, if it is at most `limit` bytes.
pub async fn whole_file(link: &Link, path: &str, limit: u64) -> Result<Vec<u8>, String> {
    let bytes = Rc::new(RefCell::new(Vec::new()));
    let read = Request::Fs(FsRequest::Read { path: path.to_owned(), offset: 0 });
    let check = |answer: &Response| match answer {
        Response::Fs(FsResponse::Reading { size, .. }) if *size > limit => Err(too_big(limit)),
        Response::Fs(FsResponse::Reading { .. }) => Ok(()),
        other => Err(format!("unexpected answer {other:?}")),
    };
    let held = Rc::clone(&bytes);
    let take = move |chunk: &[u8]| {
        let mut held = held.borrow_mut();
        held.extend_from_slice(chunk);
        // It may grow past the limit while being read.
        if held.len() as u64 > limit {
            Err(too_big(limit))
        } else {
            Ok(())
        }
    };
    to_end(link, &read, check, take).await?;
    let whole = std::mem::take(&mut *bytes.borrow_mut());
    Ok(whole)
}

fn too_big(limit: u64) -> String {
    format!("it is over {} MB: too big to open here (download it from Files)", limit / 1_000_000)
}

/// A stream owner for streams of JSON lines (the session list, `tether open`, a watched file):
/// lines may arrive in pieces; each whole one is parsed and handed to `on_line` (unreadable ones
/// are skipped), and the bytes are credited back.
pub fn json_lines<T: serde::de::DeserializeOwned + 'static>(
    link: &Link,
    on_line: impl Fn(T) + 'static,
) -> Callback<(u32, StreamEvent)> {
    let link = link.clone();
    let partial = RefCell::new(Vec::<u8>::new());
    Callback::from(move |(stream, event): (u32, StreamEvent)| {
        let StreamEvent::Data { bytes, .. } = event else { return };
        let lines: Vec<u8> = {
            let mut buffer = partial.borrow_mut();
            buffer.extend_from_slice(&bytes);
            match buffer.iter().rposition(|&b| b == b'\n') {
                Some(cut) => buffer.drain(..=cut).collect(),
                None => Vec::new(),
            }
        };
        for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            if let Ok(value) = serde_json::from_slice::<T>(line) {
                on_line(value);
            }
        }
        link.consumed(stream, bytes.len() as u64);
    })
}
