//! A host-role `Connection` after authentication with a data channel beside the relay, fed what
//! a hostile client or path can do with two paths: the client's sealed frames delivered on either
//! path, late, twice, or not at all, as the input's first bytes steer. Whatever comes, the host
//! must not panic; the frames it takes reach its opener in counter order (the opener fails the
//! connection on any other), and it holds at most `paths::MAX_EARLY_BYTES` early (beyond, it
//! fails the connection too).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_protocol::connection::{Connection, Input};
use tether_protocol::frame::FrameDecoder;
use tether_protocol::signal::Route;

fuzz_target!(|data: &[u8]| {
    let Some((&steer, frames)) = data.split_first() else { return };
    let (mut client, mut host) = Connection::fuzzing_pair(0);
    if host.open_direct(Route::Direct, 0).is_err() {
        return;
    }
    let mut decoder = FrameDecoder::new();
    if decoder.push(frames).is_err() {
        return;
    }
    // Seal everything first, one message per sealed frame, then deliver them steered.
    let mut sealed = Vec::new();
    while let Ok(Some(frame)) = decoder.next_frame() {
        if client.send_frame(&frame).is_err() {
            return;
        }
        sealed.extend(client.drain_output().0.into_iter().map(|(_, bytes)| bytes));
    }
    let mut held: Option<Vec<u8>> = None;
    for (i, message) in sealed.into_iter().enumerate() {
        let now = 1_000 * (i as u64 + 1);
        let choice = (u64::from(steer) ^ (i as u64).wrapping_mul(0x9e37_79b9)) % 5;
        let deliveries: Vec<(bool, Vec<u8>)> = match choice {
            0 => vec![(false, message)],
            1 => vec![(true, message)],
            2 => vec![(true, message.clone()), (false, message)], // on both paths
            3 => match held.replace(message) {
                // Hold this one back; let an earlier held one go now (late, on the relay).
                Some(late) => vec![(false, late)],
                None => vec![],
            },
            _ => vec![], // lost
        };
        for (direct, bytes) in deliveries {
            let input = if direct { Input::Direct(&bytes) } else { Input::Bytes(&bytes) };
            if host.handle_input(input, now).is_err() {
                return;
            }
            let _ = host.drain_output();
        }
    }
    if let Some(late) = held {
        let _ = host.handle_input(Input::Direct(&late), u64::MAX / 2);
    }
});
