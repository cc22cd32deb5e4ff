//! The body of a `cmd` frame: a request or response as JSON, in the header while it is small and
//! in the payload (ahead of the bulk bytes) when it is not, and an answer that always fits one
//! message.

use serde::Serialize;

use crate::api::{Answer, ErrorCode, Response};
use crate::error::FrameError;
use crate::frame::{Frame, Header};

/// Bodies up to this size travel in the header; bigger ones (a long session list, a big `send`)
/// in the payload, so the header cap never limits what a command may carry.
const BODY_IN_HEADER_BYTES: usize = 4 * 1024; // 4 KiB

/// A request or response as a `cmd` frame with id `id` (bulk bytes in `payload`).
pub fn cmd_frame(id: u64, body: &impl Serialize, payload: Vec<u8>) -> Frame {
    let encoded =
        serde_json::to_vec(body).unwrap_or_else(|e| format!("{{\"encode_error\":{:?}}}", e.to_string()).into_bytes());
    if encoded.len() <= BODY_IN_HEADER_BYTES {
        let body = serde_json::from_slice(&encoded).unwrap_or(serde_json::Value::Null);
        return Frame::new(Header::Cmd { id, body, body_bytes: None }, payload);
    }
    let body_bytes = u32::try_from(encoded.len()).unwrap_or(u32::MAX);
    let mut bulk = encoded;
    bulk.extend_from_slice(&payload);
    Frame::new(Header::Cmd { id, body: serde_json::Value::Null, body_bytes: Some(body_bytes) }, bulk)
}

/// A `cmd` frame's body and payload, whichever way the body travelled.
pub fn cmd_parts(
    body: serde_json::Value,
    body_bytes: Option<u32>,
    mut payload: Vec<u8>,
) -> Result<(serde_json::Value, Vec<u8>), FrameError> {
    let Some(len) = body_bytes else { return Ok((body, payload)) };
    let len = len as usize;
    if len > payload.len() {
        return Err(FrameError::Malformed(format!("cmd body of {len} bytes in a {} byte payload", payload.len())));
    }
    let rest = payload.split_off(len);
    let body = serde_json::from_slice(&payload).map_err(|e| FrameError::Malformed(format!("cmd body: {e}")))?;
    Ok((body, rest))
}

/// Largest `cmd` frame (encoded) any transport carries: one that still seals into one message.
pub const MAX_CMD_FRAME_BYTES: usize = crate::channel::MAX_SEALED_INNER_BYTES;

/// The frame for `answer` to request `id`, or an error answer saying why when `answer` is too
/// big to send (so a caller always gets an answer).
pub fn answer_frame(id: u64, answer: &Answer) -> Frame {
    let frame = cmd_frame(id, &answer.0, answer.1.clone());
    match frame.encode().map(|bytes| bytes.len()) {
        Ok(len) if len <= MAX_CMD_FRAME_BYTES => frame,
        Ok(len) => too_big(id, len),
        Err(_) => too_big(id, frame.payload.len()),
    }
}

fn too_big(id: u64, len: usize) -> Frame {
    let message = format!(
        "the answer would be {} KiB, over the {} KiB one message carries; ask for less (e.g. ls --limit)",
        len >> 10,
        MAX_CMD_FRAME_BYTES >> 10
    );
    cmd_frame(id, &Response::Error { code: ErrorCode::LimitReached, message }, Vec::new())
}
