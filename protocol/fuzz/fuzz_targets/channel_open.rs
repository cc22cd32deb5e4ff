//! The channel opener on hostile input, two ways:
//! - mode 0: raw bytes as wire frames — must be refused without panicking (they cannot
//!   authenticate);
//! - otherwise: the bytes are sealed with the right key and counter first, so they pass
//!   authentication and the fuzzer reaches the inner-frame parsing behind it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_protocol::channel::{Opener, Sealer};
use tether_protocol::frame::{decode_exact, FrameDecoder};

const KEY: [u8; 64] = [7; 64];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut opener = Opener::new(&KEY);
    if mode == 0 {
        let mut decoder = FrameDecoder::new();
        if decoder.push(rest).is_err() {
            return;
        }
        while let Ok(Some(frame)) = decoder.next_frame() {
            assert!(opener.open(&frame).is_err(), "forged frame accepted");
        }
    } else {
        let mut sealer = Sealer::new(&KEY);
        for inner in rest.split(|&b| b == mode) {
            let Ok(sealed) = sealer.seal_bytes(inner) else { return };
            match opener.open(&sealed) {
                // Whatever opens must be exactly one valid frame that round-trips.
                Ok(frame) => assert_eq!(decode_exact(inner).ok(), Some(frame)),
                Err(_) => return, // a refused inner frame ends the connection
            }
        }
    }
});
