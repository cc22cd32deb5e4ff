//! Secure-channel throughput: seal + open of whole frames (encode, AES-256-SIV, counter checks,
//! decode) beside the raw AES-256-SIV encrypt + decrypt of the same bytes, for 4 KiB and 64 KiB
//! payloads. The gap between the two is what framing and counters cost. Beside them the batch
//! AES-SIV (`siv`): one message alone (must be no slower than `aes-siv`) and batches of 8, whose
//! CMAC chains run side by side.
//!
//! Run: `cargo xtask bench`.

use aes_siv::siv::Aes256Siv;
use aes_siv::KeyInit;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tether_protocol::channel::{Opener, Sealer};
use tether_protocol::frame::{decode_exact, Frame, Header};
use tether_protocol::siv::Aes256SivBatch;

const SIZES: [usize; 2] = [4 * 1024, 64 * 1024];
const KEY: [u8; 64] = [0x42; 64];

fn seal_open(c: &mut Criterion) {
    let mut group = c.benchmark_group("channel");
    for size in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        let frame = Frame::new(Header::Data { stream: 1, seq: 0 }, vec![0xa5; size]);

        // A fresh sealer/opener pair per iteration would measure key setup; instead both advance
        // their counters in lockstep, exactly as a live connection does.
        let mut sealer = Sealer::new(&KEY);
        let mut opener = Opener::new(&KEY);
        group.bench_with_input(BenchmarkId::new("seal+open frame", size), &frame, |b, frame| {
            b.iter(|| {
                let wire = sealer.seal(frame).and_then(|f| f.encode().map_err(Into::into));
                let wire = wire.unwrap_or_else(|e| panic!("seal: {e}"));
                let sealed = decode_exact(&wire).unwrap_or_else(|e| panic!("decode: {e}"));
                black_box(opener.open(&sealed).unwrap_or_else(|e| panic!("open: {e}")))
            })
        });

        let mut cipher = Aes256Siv::new((&KEY).into());
        let plain = vec![0xa5u8; size];
        let ad = [0u8; 21];
        group.bench_with_input(BenchmarkId::new("raw aes-siv encrypt+decrypt", size), &plain, |b, plain| {
            b.iter(|| {
                let sealed = cipher.encrypt([&ad[..]], plain).unwrap_or_else(|_| panic!("encrypt"));
                black_box(cipher.decrypt([&ad[..]], &sealed).unwrap_or_else(|_| panic!("decrypt")))
            })
        });

        let batch = Aes256SivBatch::new(&KEY).unwrap_or_else(|| panic!("a 64-byte key"));
        group.bench_with_input(BenchmarkId::new("batch aes-siv seal+open, 1 message", size), &plain, |b, plain| {
            b.iter(|| {
                let sealed = batch.seal(&[(&ad[..], &plain[..])]);
                black_box(batch.open(&[(&ad[..], &sealed[0][..])]))
            })
        });
        group.throughput(Throughput::Bytes(8 * size as u64));
        let items: Vec<(&[u8], &[u8])> = (0..8).map(|_| (&ad[..], &plain[..])).collect();
        group.bench_with_input(BenchmarkId::new("batch aes-siv seal+open, 8 messages", size), &items, |b, items| {
            b.iter(|| {
                let sealed = batch.seal(items);
                let opening: Vec<(&[u8], &[u8])> = sealed.iter().map(|s| (&ad[..], &s[..])).collect();
                black_box(batch.open(&opening))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, seal_open);
criterion_main!(benches);
