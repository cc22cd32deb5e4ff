//! Saving a host's file in the browser.
//!
//! When the service worker (`sw.js`) controls the page, a download streams to disk: each chunk
//! from the host goes to the worker as it arrives, and the host is credited for the chunks sent
//! to it only when the worker's stream pulls for more (`transfer::PullCredit`), so a 2 GB file
//! never sits in the page's memory (the connection's flow-control window bounds it). Before the
//! worker is active (the very first visit), the file is gathered into a `Blob` instead.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use tether_protocol::api::{Request, Response};
use tether_protocol::fs::{FsRequest, FsResponse};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use yew::Callback;

use tether_protocol::transfer::{Download, PullCredit};

use crate::link::{Link, StreamEvent, RECONNECT_WAIT_MS, RESUMES};

/// The worker's path (Trunk copies it to the root, so its scope is the whole app).
const WORKER: &str = "/sw.js";
/// Where the worker answers with a download's stream.
const DOWNLOAD_PATH: &str = "/tether-download/";

/// Register the worker at start-up (a browser without service workers downloads via `Blob`).
pub fn register_worker() {
    let Some(container) = web_sys::window().map(|w| w.navigator().service_worker()) else { return };
    // A rejected registration only means the Blob way is used.
    let _ = container.register(WORKER);
}

fn controller() -> Option<web_sys::ServiceWorker> {
    web_sys::window()?.navigator().service_worker().controller()
}

fn object(pairs: &[(&str, &JsValue)]) -> JsValue {
    let object = js_sys::Object::new();
    for (key, value) in pairs {
        let _ = js_sys::Reflect::set(&object, &JsValue::from_str(key), value);
    }
    object.into()
}

fn random_id() -> String {
    let mut bytes = [0u8; 16];
    if let Some(crypto) = web_sys::window().and_then(|w| w.crypto().ok()) {
        let _ = crypto.get_random_values_with_u8_array(&mut bytes);
    }
    tether_protocol::hex::encode(&bytes)
}

/// Where a download's bytes go.
enum Sink {
    /// To the service worker's stream. Chunks are credited when its stream pulls for more.
    Worker {
        port: web_sys::MessagePort,
        credit: PullCredit,
    },
    Blob {
        parts: js_sys::Array,
    },
}

struct Saving {
    sink: Sink,
    /// Where the download stands (the protocol's planner, as `tether cp` has it).
    plan: Download,
    /// The user cancelled it in the browser's downloads.
    cancelled: bool,
}

/// Download what `request` streams (`read` of a file, `archive` of a folder) as `name`;
/// `progress` hears the bytes so far.
pub async fn save(link: &Link, request: FsRequest, name: &str, progress: impl Fn(u64) + 'static) -> Result<(), String> {
    let progress: Rc<dyn Fn(u64)> = Rc::new(progress);
    let download = Rc::new(RefCell::new(Saving {
        sink: Sink::Blob { parts: js_sys::Array::new() },
        plan: Download::resuming(0),
        cancelled: false,
    }));
    // With a worker: hand it the download first, and wait until it is ready for the navigation.
    let mut navigate_to = None;
    let mut _listening = None;
    if let Some(worker) = controller() {
        let channel = web_sys::MessageChannel::new().map_err(|_| "no message channel".to_owned())?;
        let id = random_id();
        let (ready_tx, ready) = futures_channel::oneshot::channel::<()>();
        let ready_tx = Cell::new(Some(ready_tx));
        let on_message = {
            let (download, link) = (Rc::clone(&download), link.clone());
            Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| {
                let data = event.data();
                let has = |key: &str| {
                    js_sys::Reflect::get(&data, &JsValue::from_str(key)).map(|v| v.is_truthy()).unwrap_or(false)
                };
                if has("ready") {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                } else if has("pull") {
                    // The stream wants more: credit what it was handed (`PullCredit`).
                    // (The borrow ends before the link is called: it may hand this download more.)
                    let credit = match &mut download.borrow_mut().sink {
                        Sink::Worker { credit, .. } => credit.asked(),
                        Sink::Blob { .. } => Vec::new(),
                    };
                    for (stream, n) in credit {
                        link.consumed(stream, n);
                    }
                } else if has("cancelled") {
                    download.borrow_mut().cancelled = true;
                }
            })
        };
        let port = channel.port1();
        port.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        let size = JsValue::from_f64(-1.0);
        let message = object(&[("id", &JsValue::from_str(&id)), ("name", &JsValue::from_str(name)), ("size", &size)]);
        worker
            .post_message_with_transferable(&message, &js_sys::Array::of1(&channel.port2()))
            .map_err(|_| "the download worker is not answering".to_owned())?;
        ready.await.map_err(|_| "the download worker is not answering".to_owned())?;
        download.borrow_mut().sink = Sink::Worker { port, credit: PullCredit::default() };
        navigate_to = Some(format!("{DOWNLOAD_PATH}{id}"));
        _listening = Some(Listening { port: channel.port1(), _on_message: on_message });
    }

    // A file read that is cut off goes on from the byte it got to, on the connection made again
    // (the browser's download stays open meanwhile); a folder's archive cannot.
    let resume_path = match &request {
        FsRequest::Read { path, .. } => Some(path.clone()),
        _ => None,
    };
    let mut request = Some(request);
    let mut attempts = 0;
    let whole = loop {
        let (whole, answered) =
            read_once(link, &download, request.take(), &resume_path, &progress, &mut navigate_to).await;
        match answered {
            Ok(Some(total)) => {
                let started = download.borrow_mut().plan.started(total);
                if let Err(e) = started {
                    return Err(finish_failed(&download, format!("{name}: {e}")));
                }
            }
            Ok(None) => {}
            Err(message) if attempts == 0 && download.borrow().plan.size().is_none() => {
                return Err(finish_failed(&download, message))
            }
            Err(_) => {}
        }
        if whole || download.borrow().cancelled || resume_path.is_none() {
            break whole;
        }
        attempts += 1;
        if attempts > RESUMES || !link.connected_again(RECONNECT_WAIT_MS).await {
            break false;
        }
        // Credit owed to the stream that was cut is moot on the new connection.
        if let Sink::Worker { credit, .. } = &mut download.borrow_mut().sink {
            credit.restart();
        }
    };
    if download.borrow().cancelled {
        return Err("cancelled".into());
    }
    if !whole {
        return Err(finish_failed(&download, "the connection was lost".into()));
    }
    let finished = download.borrow().plan.finished();
    if let Err(e) = finished {
        return Err(finish_failed(&download, format!("{name}: {e}")));
    }
    let held = std::mem::replace(&mut download.borrow_mut().sink, Sink::Blob { parts: js_sys::Array::new() });
    match held {
        Sink::Worker { port, .. } => {
            let _ = port.post_message(&object(&[("end", &JsValue::TRUE)]));
        }
        Sink::Blob { parts } => {
            let blob =
                web_sys::Blob::new_with_u8_array_sequence(&parts).map_err(|_| "cannot make the file".to_owned())?;
            let url =
                web_sys::Url::create_object_url_with_blob(&blob).map_err(|_| "cannot make the file".to_owned())?;
            click(&url, Some(name))?;
            // Revoked once the download has had its chance to start.
            if let Some(timer) = crate::link::Timer::after(60_000, move || drop(web_sys::Url::revoke_object_url(&url)))
            {
                std::mem::forget(timer);
            }
        }
    }
    Ok(())
}

/// The page's end of the channel to the worker, and what listens on it; when the download is
/// over either way, the listener goes first (the worker may still send a last `pull`).
struct Listening {
    port: web_sys::MessagePort,
    _on_message: Closure<dyn FnMut(web_sys::MessageEvent)>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.port.set_onmessage(None);
        self.port.close();
    }
}

/// One stream of the download: `request` the first time, else a read from the byte it got to.
/// Whether it reached `eof`, and the size the host answered (`None` for an archive).
async fn read_once(
    link: &Link,
    download: &Rc<RefCell<Saving>>,
    request: Option<FsRequest>,
    resume_path: &Option<String>,
    progress: &Rc<dyn Fn(u64)>,
    navigate_to: &mut Option<String>,
) -> (bool, Result<Option<u64>, String>) {
    let request = match (request, resume_path) {
        (Some(request), _) => request,
        (None, Some(path)) => download.borrow().plan.request(path),
        (None, None) => return (false, Err("an archive cannot go on from the middle".into())),
    };
    let (done_tx, done) = futures_channel::oneshot::channel::<bool>();
    let done_tx = Rc::new(Cell::new(Some(done_tx)));
    let owner = {
        let (download, link, progress) = (Rc::clone(download), link.clone(), Rc::clone(progress));
        Callback::from(move |(stream, event): (u32, StreamEvent)| match event {
            StreamEvent::Data { bytes, .. } => {
                let n = bytes.len() as u64;
                // What to tell the link, decided while the download is borrowed and done after:
                // the link may hand this download its next chunk from inside the call.
                let (credit, cancelled) = {
                    let mut held = download.borrow_mut();
                    let got = held.plan.received(n);
                    progress(got);
                    let chunk = js_sys::Uint8Array::from(bytes.as_slice());
                    let credit = match &mut held.sink {
                        Sink::Worker { port, credit } => {
                            let buffer = chunk.buffer();
                            let _ = port.post_message_with_transferable(
                                &object(&[("chunk", &buffer)]),
                                &js_sys::Array::of1(&buffer),
                            );
                            credit.handed(stream, n)
                        }
                        Sink::Blob { parts } => {
                            parts.push(&chunk);
                            Some((stream, n))
                        }
                    };
                    (credit, held.cancelled)
                };
                if let Some((stream, n)) = credit {
                    link.consumed(stream, n);
                }
                if cancelled {
                    link.forget_stream(stream);
                    if let Some(tx) = done_tx.take() {
                        let _ = tx.send(false);
                    }
                }
            }
            StreamEvent::Eof | StreamEvent::Skipped { .. } | StreamEvent::Lost { .. } => {
                if let Some(tx) = done_tx.take() {
                    let _ = tx.send(matches!(event, StreamEvent::Eof));
                }
            }
            StreamEvent::Writable | StreamEvent::Resumed { .. } => {}
        })
    };
    let answered = match link.open_stream(&Request::Fs(request), owner).await {
        Ok((Response::Fs(FsResponse::Reading { size, .. }), _)) => Ok(Some(size)),
        Ok((Response::Fs(FsResponse::Archiving { .. }), _)) => Ok(None),
        Ok((Response::Error { message, .. }, _)) | Err(message) => return (false, Err(message)),
        Ok((other, _)) => return (false, Err(format!("unexpected answer {other:?}"))),
    };
    // The browser's download starts once the host has answered, and its stream pulls as it
    // writes (so credit, and more bytes, follow).
    if let Some(url) = navigate_to.take() {
        if let Err(why) = click(&url, None) {
            return (false, Err(why));
        }
    }
    // A lost connection ends the stream (`Lost`): not whole.
    (done.await.unwrap_or(false), answered)
}

/// Tell the worker's stream (if any) that the download failed; returns `why`.
fn finish_failed(download: &Rc<RefCell<Saving>>, why: String) -> String {
    if let Sink::Worker { port, .. } = &download.borrow().sink {
        let _ = port.post_message(&object(&[("abort", &JsValue::from_str(&why))]));
    }
    why
}

/// Follow a link as a click would (`download`: save under this name).
fn click(url: &str, download: Option<&str>) -> Result<(), String> {
    let document = web_sys::window().and_then(|w| w.document()).ok_or("no document")?;
    let anchor: web_sys::HtmlAnchorElement =
        document.create_element("a").map_err(|_| "no anchor")?.dyn_into().map_err(|_| "no anchor")?;
    anchor.set_href(url);
    if let Some(name) = download {
        anchor.set_download(name);
    }
    anchor.click();
    Ok(())
}
