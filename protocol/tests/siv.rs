//! The batch AES-SIV (`siv`) against the `aes-siv` crate and RFC 5297: every lane, every length
//! around the block boundaries and the CTR chunking, batches of mixed lengths; natively and in
//! wasm32.
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use aes_siv::aead::KeyInit;
use aes_siv::siv::{Aes128Siv, Aes256Siv};
use tether_protocol::siv::{Aes256SivBatch, SivBatch};

mod common;
use common::{cbc_mac, ctr_64};

/// A deterministic stream of bytes (xorshift), so a failure names its own inputs.
struct Bytes(u64);

impl Bytes {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn take(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn reference(key: &[u8; 64], ad: &[u8], plain: &[u8]) -> Vec<u8> {
    let mut siv = Aes256Siv::new(key.into());
    siv.encrypt([ad], plain).expect("aes-siv seals")
}

/// Lengths where something changes: empty, under a block, the block edges, the xorend tail of
/// 16..=31 bytes, a CTR chunk (64 blocks) and a channel frame's size.
fn lengths() -> Vec<usize> {
    let mut lengths: Vec<usize> = (0..=70).collect();
    lengths.extend([127, 128, 129, 1023, 1024, 1025, 4095, 4096, 4097, 65_535, 65_536, 65_537]);
    lengths
}

#[test]
fn each_lane_is_aes_siv_bit_for_bit_alone_and_in_mixed_batches() {
    let mut random = Bytes(0x9e37_79b9_7f4a_7c15);
    let key: [u8; 64] = random.take(64).try_into().expect("64 bytes");
    let batch = Aes256SivBatch::new(&key).expect("a 64-byte key");
    let lengths = lengths();
    let ads: Vec<Vec<u8>> = (0..lengths.len()).map(|i| random.take(i % 40)).collect();
    let plains: Vec<Vec<u8>> = lengths.iter().map(|&len| random.take(len)).collect();
    // Alone.
    for (ad, plain) in ads.iter().zip(&plains) {
        let sealed = batch.seal(&[(ad, plain)]);
        assert_eq!(sealed[0], reference(&key, ad, plain), "{} bytes, AD {} bytes", plain.len(), ad.len());
        let opened = batch.open(&[(ad, &sealed[0])]);
        assert_eq!(opened[0].as_deref(), Some(&plain[..]));
    }
    // In batches of 1 to 9 lanes of mixed lengths.
    let mut start = 0;
    for size in (1..=9).cycle() {
        if start >= plains.len() {
            break;
        }
        let end = (start + size).min(plains.len());
        let items: Vec<(&[u8], &[u8])> = (start..end).map(|i| (&ads[i][..], &plains[i][..])).collect();
        let sealed = batch.seal(&items);
        for (i, out) in (start..end).zip(&sealed) {
            assert_eq!(out, &reference(&key, &ads[i], &plains[i]), "lane of {} bytes", plains[i].len());
        }
        let to_open: Vec<(&[u8], &[u8])> = items.iter().zip(&sealed).map(|((ad, _), s)| (*ad, &s[..])).collect();
        for (opened, i) in batch.open(&to_open).iter().zip(start..end) {
            assert_eq!(opened.as_deref(), Some(&plains[i][..]));
        }
        start = end;
    }
}

#[test]
fn a_lane_that_does_not_authenticate_opens_to_nothing_and_spoils_no_other() {
    let mut random = Bytes(42);
    let key: [u8; 64] = random.take(64).try_into().expect("64 bytes");
    let batch = Aes256SivBatch::new(&key).expect("a 64-byte key");
    let plains: Vec<Vec<u8>> = [0, 5, 16, 33, 4096].iter().map(|&n| random.take(n)).collect();
    let ad = b"tether/v1 ctr\0\0\0\0\0\0\0\x07";
    let items: Vec<(&[u8], &[u8])> = plains.iter().map(|p| (&ad[..], &p[..])).collect();
    let sealed = batch.seal(&items);
    for bad in 0..sealed.len() {
        for byte in [0, 15, 16, sealed[bad].len() - 1] {
            if byte >= sealed[bad].len() {
                continue;
            }
            let mut tampered = sealed.clone();
            tampered[bad][byte] ^= 0x01;
            let to_open: Vec<(&[u8], &[u8])> = tampered.iter().map(|s| (&ad[..], &s[..])).collect();
            let opened = batch.open(&to_open);
            for (i, result) in opened.iter().enumerate() {
                if i == bad {
                    assert_eq!(result, &None, "lane {bad} byte {byte} changed");
                } else {
                    assert_eq!(result.as_deref(), Some(&plains[i][..]));
                }
            }
        }
    }
    // Another AD, a short message: nothing.
    assert_eq!(batch.open(&[(b"other", &sealed[2])]), vec![None]);
    assert_eq!(batch.open(&[(&ad[..], &sealed[2][..15])]), vec![None]);
}

#[test]
fn rfc_5297_deterministic_vector() {
    // RFC 5297, A.1 (AES-SIV-CMAC-256, so AES-128 underneath).
    let key = hex::decode("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff").expect("hex");
    let ad = hex::decode("101112131415161718191a1b1c1d1e1f2021222324252627").expect("hex");
    let plain = hex::decode("112233445566778899aabbccddee").expect("hex");
    let expected = hex::decode("85632d07c6e8f37f950acd320a2ecc9340c02b9690c4dc04daef7f6afe5c").expect("hex");
    let batch = SivBatch::<aes::Aes128>::new(&key).expect("a 32-byte key");
    assert_eq!(batch.seal(&[(&ad, &plain)]), vec![expected.clone()]);
    assert_eq!(batch.open(&[(&ad, &expected)]), vec![Some(plain.clone())]);
    let mut reference = Aes128Siv::new(key[..].try_into().expect("32 bytes"));
    assert_eq!(reference.encrypt([&ad], &plain).expect("seals"), expected);
}

#[test]
fn opening_through_aes_cbc_and_aes_ctr_is_aes_siv_bit_for_bit() {
    use tether_protocol::siv::ctr_counter_block;
    let mut random = Bytes(7);
    let key: [u8; 64] = random.take(64).try_into().expect("64 bytes");
    let batch = Aes256SivBatch::new(&key).expect("a 64-byte key");
    let (mac_key, ctr_key) = key.split_at(32);
    for len in lengths() {
        let ad = random.take(len % 29);
        let plain = random.take(len);
        let sealed = reference(&key, &ad, &plain);
        let tag: [u8; 16] = sealed[..16].try_into().expect("a tag");
        // CTR from the tag's counter block gives the plaintext back...
        let opened = ctr_64(ctr_key, ctr_counter_block(&tag), &sealed[16..]);
        assert_eq!(opened, plain, "{len} bytes");
        // ...and CBC-MAC over what S2V's last step makes of it gives the tag.
        let input = batch.s2v_finish(&ad).cbc_mac_input(&opened);
        assert_eq!(input.len() % 16, 0);
        assert_eq!(cbc_mac(mac_key, &input), tag, "{len} bytes, AD {} bytes", ad.len());
        // A changed plaintext does not.
        if len > 0 {
            let mut changed = opened.clone();
            changed[len / 2] ^= 1;
            assert_ne!(cbc_mac(mac_key, &batch.s2v_finish(&ad).cbc_mac_input(&changed)), tag);
        }
    }
}
