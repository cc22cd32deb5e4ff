//! A host file's bytes into memory, for the editor (open, reload, compare). Big downloads go to
//! disk through `download` instead; this refuses anything over its caller's limit.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use tether_protocol::api::{Request, Response};
use tether_protocol::fs::{FsRequest, FsResponse};
use yew::Callback;

use crate::link::{Link, StreamEvent};

/// The whole of the file at `path`, if it is at most `limit` bytes.
pub async fn whole_file(link: &Link, path: &str, limit: u64) -> Result<Vec<u8>, String> {
    let bytes = Rc::new(RefCell::new(Vec::new()));
    let (done_tx, done) = futures_channel::oneshot::channel::<Result<(), String>>();
    let done_tx = Rc::new(Cell::new(Some(done_tx)));
    let finish = {
        let done_tx = Rc::clone(&done_tx);
        move |result: Result<(), String>| {
            if let Some(tx) = done_tx.take() {
                let _ = tx.send(result);
            }
        }
    };
    let owner = {
        let (bytes, link, finish) = (Rc::clone(&bytes), link.clone(), finish.clone());
        Callback::from(move |(stream, event): (u32, StreamEvent)| match event {
            StreamEvent::Data { bytes: chunk, .. } => {
                let mut held = bytes.borrow_mut();
                held.extend_from_slice(&chunk);
                link.consumed(stream, chunk.len() as u64);
                if held.len() as u64 > limit {
                    link.forget_stream(stream); // it grew past the limit while being read
                    finish(Err(too_big(limit)));
                }
            }
            StreamEvent::Eof => finish(Ok(())),
            StreamEvent::Skipped { .. } => finish(Err("the host skipped part of the file".into())),
        })
    };
    let read = Request::Fs(FsRequest::Read { path: path.to_owned(), offset: 0 });
    match link.open_stream(&read, owner).await? {
        (Response::Fs(FsResponse::Reading { size, .. }), stream) if size > limit => {
            link.forget_stream(stream);
            return Err(too_big(limit));
        }
        (Response::Fs(FsResponse::Reading { .. }), _) => {}
        (other, _) => return Err(format!("unexpected answer {other:?}")),
    }
    done.await.map_err(|_| "the connection was lost while reading the file".to_owned())??;
    let whole = std::mem::take(&mut *bytes.borrow_mut());
    Ok(whole)
}

fn too_big(limit: u64) -> String {
    format!("it is over {} MB: too big to open here (download it from Files)", limit / 1_000_000)
}
