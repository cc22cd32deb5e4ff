//! A host-role `Connection` after authentication, fed whatever an authenticated but hostile
//! client can send: the input is a run of frames, each sealed by the client and delivered to the
//! host. Whatever comes, the host must not panic, and its state must stay bounded: no more
//! streams than `MAX_STREAMS`, and every output it queues drained by the caller.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_protocol::connection::{Connection, Input, MAX_STREAMS};
use tether_protocol::frame::FrameDecoder;

fuzz_target!(|data: &[u8]| {
    let (mut client, mut host) = Connection::fuzzing_pair(0);
    let mut decoder = FrameDecoder::new();
    if decoder.push(data).is_err() {
        return;
    }
    let mut now = 0u64;
    while let Ok(Some(frame)) = decoder.next_frame() {
        now += 1_000;
        if client.send_frame(&frame).is_err() {
            return;
        }
        let (transmits, _) = client.drain_output();
        for (_, bytes) in transmits {
            let failed = host.handle_input(Input::Bytes(&bytes), now).is_err();
            // The host answers (credit, pongs) toward the client; the client may refuse them.
            let (answers, _) = host.drain_output();
            for (_, answer) in answers {
                let _ = client.handle_input(Input::Bytes(&answer), now);
            }
            assert!(host.stream_count() <= MAX_STREAMS, "stream table grew to {}", host.stream_count());
            if failed {
                return;
            }
        }
        let _ = host.handle_timeout(now);
    }
});
