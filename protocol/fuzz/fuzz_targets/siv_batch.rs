//! The batch AES-SIV against the `aes-siv` crate: the input is cut into (AD, plaintext) pairs
//! at a separator byte chosen by its first byte; every lane of the batch must equal `aes-siv`'s
//! output for its pair, open back to its plaintext, and a flipped byte must not open.
#![no_main]

use aes_siv::siv::Aes256Siv;
use aes_siv::KeyInit;
use libfuzzer_sys::fuzz_target;
use tether_protocol::siv::Aes256SivBatch;

const KEY: [u8; 64] = [0x5c; 64];

fuzz_target!(|data: &[u8]| {
    let Some((&separator, rest)) = data.split_first() else { return };
    let parts: Vec<&[u8]> = rest.split(|&b| b == separator).collect();
    let items: Vec<(&[u8], &[u8])> = parts.chunks(2).map(|pair| (pair[0], pair.get(1).copied().unwrap_or(&[]))).collect();
    let batch = Aes256SivBatch::new(&KEY).expect("a 64-byte key");
    let sealed = batch.seal(&items);
    let mut reference = Aes256Siv::new((&KEY).into());
    for ((ad, plain), out) in items.iter().zip(&sealed) {
        assert_eq!(out, &reference.encrypt([*ad], *plain).expect("aes-siv seals"));
    }
    let opening: Vec<(&[u8], &[u8])> = items.iter().zip(&sealed).map(|((ad, _), s)| (*ad, &s[..])).collect();
    for ((_, plain), opened) in items.iter().zip(batch.open(&opening)) {
        assert_eq!(opened.as_deref(), Some(*plain));
    }
    if let Some(first) = sealed.first() {
        let mut flipped = first.clone();
        let at = usize::from(separator) % flipped.len();
        flipped[at] ^= 0x01;
        assert_eq!(batch.open(&[(items[0].0, &flipped)]), vec![None]);
    }
});
