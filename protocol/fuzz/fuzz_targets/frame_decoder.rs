//! Arbitrary bytes, split into arbitrary pushes, must never panic the decoder; every frame it
//! does return must survive re-encoding unchanged. (Re-encoding may legitimately overflow the
//! header cap — JSON `1E5` comes back as `100000.0` — so that one error is allowed.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_protocol::frame::{decode_exact, FrameDecoder};
use tether_protocol::FrameError;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let chunk = usize::from(split).max(1);
    let mut decoder = FrameDecoder::new();
    for piece in rest.chunks(chunk) {
        if decoder.push(piece).is_err() {
            return;
        }
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => match frame.encode() {
                    Ok(wire) => assert_eq!(decode_exact(&wire).expect("re-encoded frame decodes"), frame),
                    Err(e) => assert!(matches!(e, FrameError::HeaderTooLarge { .. }), "re-encode: {e}"),
                },
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
