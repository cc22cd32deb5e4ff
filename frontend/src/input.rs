//! Input on its way to one session. Keystrokes go at once. Input bigger than one request (a
//! large paste) goes in chunks, each sent once the program has taken the one before (`paced`),
//! and whatever is typed meanwhile waits behind it, so the order always holds and nothing is
//! dropped for being big.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use tether_protocol::api::{Request, MAX_INPUT_CHUNK_BYTES};

use crate::link::Link;

#[derive(Clone)]
pub struct Input {
    link: Link,
    session: String,
    state: Rc<RefCell<State>>,
}

#[derive(Default)]
struct State {
    /// Chunks waiting for the ones before them to be taken.
    queue: VecDeque<Vec<u8>>,
    /// A task is sending the queue.
    sending: bool,
}

impl Input {
    pub fn new(link: Link, session: String) -> Input {
        Input { link, session, state: Rc::default() }
    }

    /// Type `bytes` into the session.
    pub fn write(&self, bytes: Vec<u8>) {
        self.link.note_input();
        let mut state = self.state.borrow_mut();
        if !state.sending && bytes.len() <= MAX_INPUT_CHUNK_BYTES {
            drop(state);
            self.link.send(&Request::Write { session: self.session.clone(), paced: false }, bytes);
            return;
        }
        state.queue.extend(bytes.chunks(MAX_INPUT_CHUNK_BYTES).map(<[u8]>::to_vec));
        if !std::mem::replace(&mut state.sending, true) {
            wasm_bindgen_futures::spawn_local(self.clone().send_queue());
        }
    }

    async fn send_queue(self) {
        loop {
            let Some(chunk) = self.state.borrow_mut().queue.pop_front() else { break };
            let write = Request::Write { session: self.session.clone(), paced: true };
            if let Err(why) = self.link.call(&write, chunk).await {
                // The program stopped reading or the link went: what is left would arrive out
                // of its time, so it goes, and the console says why.
                web_sys::console::warn_1(&format!("input not delivered: {why}").into());
                self.state.borrow_mut().queue.clear();
                break;
            }
        }
        self.state.borrow_mut().sending = false;
    }
}
