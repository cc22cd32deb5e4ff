//! Input on its way to one session: typed keys and pastes ride the session's attach stream, the
//! way an exec's stdin does. The protocol's client queues them and sends them in order as the
//! host's credit allows, so a big paste goes at the program's pace, nothing typed is reordered
//! or dropped for being big, and a keystroke costs no answer of its own.

use std::cell::Cell;
use std::rc::Rc;

use crate::link::Link;

#[derive(Clone)]
pub struct SessionInput {
    link: Link,
    /// The attach stream's handle, once it is open.
    stream: Rc<Cell<Option<u32>>>,
}

impl SessionInput {
    pub fn new(link: Link) -> SessionInput {
        SessionInput { link, stream: Rc::default() }
    }

    /// SessionInput goes on `stream` from now on (`None`: not attached, input goes nowhere).
    pub fn attached(&self, stream: Option<u32>) {
        self.stream.set(stream);
    }

    /// Type `bytes` into the session.
    pub fn write(&self, bytes: Vec<u8>) {
        self.link.note_input();
        match self.stream.get() {
            Some(stream) => self.link.write_input(stream, &bytes),
            None => web_sys::console::warn_1(&"input not delivered: the terminal is not attached".into()),
        }
    }
}
