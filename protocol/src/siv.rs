//! AES-SIV (RFC 5297) for several messages at once: for each message, bit for bit what
//! `aes_siv::siv::Siv` makes of it with one associated-data component (as the channel seals).
//!
//! Why: S2V is a CMAC chain, serial within a message, so one message can never go faster than
//! AES-CBC — one block in flight at a time, while an AES core can pipeline eight. Messages are
//! independent given key and associated data, so here the CMAC chains of a whole batch advance
//! in lockstep: each step encrypts one block of every message still running in one
//! `encrypt_blocks` call, which the AES backends (AES-NI, and the constant-time software
//! fixslice used in wasm32) run side by side — as IPsec stacks do for CBC ("multi-buffer").
//! The CTR pass is parallel within a message already; it runs 64 counter blocks per call.
//!
//! Invariants:
//! - No new cryptography: the same AES-SIV, each lane equal to `aes_siv`'s output (property test
//!   in `tests/siv.rs`, the fuzz target `siv_batch`, RFC 5297 A.1 and the pyca vectors pinned).
//! - A lone message costs no more than through `aes_siv` (the batch of one is its own loop).
//! - Opening compares the whole tag in constant time and gives no plaintext for a message whose
//!   tag is wrong.
//! - A shell with a faster AES of its own (a browser's WebCrypto, native where WASM has only a
//!   software AES) opens and seals through `S2vFinish` and `ctr_counter_block`: this module
//!   still says what to encrypt, that AES only runs AES-CTR and AES-CBC over it, and the result
//!   is the same AES-SIV bit for bit (tests in `tests/siv.rs` run both through plain AES).

use aes::cipher::array::Array;
use aes::cipher::consts::U16;
use aes::cipher::typenum::Unsigned;
use aes::cipher::{
    Block, BlockCipherEncBackend, BlockCipherEncClosure, BlockCipherEncrypt, BlockSizeUser, KeyInit, ParBlocks,
};

const BLOCK: usize = 16;
/// CMAC chains advanced side by side when the batch is narrower than the backend's parallel
/// call: enough independent AES chains to fill the pipeline of an AES unit (latency ~4 cycles a
/// round, ~1 round issued a cycle).
const INTERLEAVE: usize = 8;
/// Counter blocks encrypted per call in the CTR pass.
const CTR_CHUNK_BLOCKS: usize = 64;

/// AES-256-SIV (a 64-byte key), as the channel uses.
pub type Aes256SivBatch = SivBatch<aes::Aes256>;

/// An AES-SIV key, ready to seal and open batches.
pub struct SivBatch<C> {
    /// K1: S2V's CMAC key.
    mac: C,
    /// K2: the CTR key.
    ctr: C,
    /// CMAC(K1, 0^128), S2V's first value.
    zero_mac: [u8; BLOCK],
    subkeys: Subkeys,
}

/// Doubling in GF(2^128), as CMAC and S2V define it.
fn dbl(block: [u8; BLOCK]) -> [u8; BLOCK] {
    let value = u128::from_be_bytes(block);
    let doubled = (value << 1) ^ if value >> 127 == 1 { 0x87 } else { 0 };
    doubled.to_be_bytes()
}

#[inline(always)]
fn xor(a: [u8; BLOCK], b: &[u8; BLOCK]) -> [u8; BLOCK] {
    (u128::from_ne_bytes(a) ^ u128::from_ne_bytes(*b)).to_ne_bytes()
}

/// One message's CMAC as it runs: whole blocks taken as they are, then a short tail (its last
/// block gets CMAC's subkey), and the chaining value.
struct Lane<'a> {
    whole: &'a [u8],
    tail: [u8; 2 * BLOCK],
    tail_len: usize,
    /// Blocks in all.
    blocks: usize,
    chain: [u8; BLOCK],
}

impl<'a> Lane<'a> {
    /// The CMAC of `whole ‖ tail`, the tail given (0..=32 bytes; `whole` a multiple of 16).
    fn new(whole: &'a [u8], tail_bytes: &[u8]) -> Lane<'a> {
        let mut tail = [0u8; 2 * BLOCK];
        tail[..tail_bytes.len()].copy_from_slice(tail_bytes);
        let blocks = whole.len() / BLOCK + tail_bytes.len().div_ceil(BLOCK).max(1);
        Lane { whole, tail, tail_len: tail_bytes.len(), blocks, chain: [0; BLOCK] }
    }

    /// The CMAC of `message`, split so that the tail holds its last 1..=16 bytes.
    fn of(message: &'a [u8]) -> Lane<'a> {
        let split = message.len().saturating_sub(1) / BLOCK * BLOCK;
        Lane::new(&message[..split], &message[split..])
    }

    /// Block `i`, the chaining value and (for the last) the subkey mixed in.
    #[inline(always)]
    fn input(&self, i: usize, subkeys: &Subkeys) -> [u8; BLOCK] {
        let whole_blocks = self.whole.len() / BLOCK;
        if i < whole_blocks {
            let mut block = [0u8; BLOCK];
            block.copy_from_slice(&self.whole[i * BLOCK..(i + 1) * BLOCK]);
            return xor(block, &self.chain);
        }
        let mut block = [0u8; BLOCK];
        let start = (i - whole_blocks) * BLOCK;
        let len = self.tail_len.saturating_sub(start).min(BLOCK);
        block[..len].copy_from_slice(&self.tail[start..start + len]);
        if i + 1 == self.blocks {
            if len == BLOCK {
                block = xor(block, &subkeys.complete);
            } else {
                block[len] = 0x80;
                block = xor(block, &subkeys.padded);
            }
        }
        xor(block, &self.chain)
    }
}

/// CMAC's subkeys for a complete and for a padded last block.
#[derive(Clone)]
struct Subkeys {
    complete: [u8; BLOCK],
    padded: [u8; BLOCK],
}

/// The CMAC chains of some lanes, run inside one call to the cipher's backend: lanes go in
/// groups as wide as the backend encrypts at once, each group's chains a block a step; a lone
/// lane is a plain serial CMAC.
struct CmacRun<'r, 'a> {
    lanes: &'r mut [Lane<'a>],
    subkeys: &'r Subkeys,
}

impl BlockSizeUser for CmacRun<'_, '_> {
    type BlockSize = U16;
}

impl BlockCipherEncClosure for CmacRun<'_, '_> {
    fn call<B: BlockCipherEncBackend<BlockSize = U16>>(self, backend: &B) {
        let width = <B::ParBlocksSize as Unsigned>::USIZE.max(1);
        // Groups as wide as the backend's parallel call when the batch fills one; else of
        // `INTERLEAVE` lanes, each step a block of each through single-block calls whose AES
        // rounds the CPU overlaps (independent chains): a 30-wide VAES call for 8 chains costs
        // more than that (measured).
        let wide = self.lanes.len() >= width;
        for group in self.lanes.chunks_mut(if wide { width } else { INTERLEAVE }) {
            let steps = group.iter().map(|lane| lane.blocks).max().unwrap_or(0);
            if group.len() == width {
                let mut blocks = ParBlocks::<B>::default();
                for i in 0..steps {
                    for (slot, lane) in blocks.iter_mut().zip(group.iter()) {
                        if i < lane.blocks {
                            *slot = Array(lane.input(i, self.subkeys));
                        }
                    }
                    backend.encrypt_par_blocks((&mut blocks).into());
                    for (slot, lane) in blocks.iter().zip(group.iter_mut()) {
                        if i < lane.blocks {
                            lane.chain = slot.0;
                        }
                    }
                }
                continue;
            }
            for i in 0..steps {
                for lane in group.iter_mut() {
                    if i < lane.blocks {
                        let mut block = Array(lane.input(i, self.subkeys));
                        backend.encrypt_block((&mut block).into());
                        lane.chain = block.0;
                    }
                }
            }
        }
    }
}

/// S2V's last step for one message whose associated data is already taken in: what a shell
/// that runs AES itself needs to compute the synthetic IV of a plaintext.
#[derive(Clone)]
pub struct S2vFinish {
    /// S2V's running value after the associated data (`dbl(CMAC(0)) ⊕ CMAC(AD)`).
    d: [u8; BLOCK],
    subkeys: Subkeys,
}

impl S2vFinish {
    /// The bytes whose CBC-MAC under K1 — the last block of AES-CBC from a zero IV, padding
    /// aside — is S2V(AD, `plain`), i.e. the tag: S2V's last string as CMAC takes it (the lane
    /// `s2v` runs), its subkey already mixed into the last block. A whole number of blocks.
    pub fn cbc_mac_input(&self, plain: &[u8]) -> Vec<u8> {
        let lane = last_step_lane(self.d, plain);
        let mut input = Vec::with_capacity(lane.blocks * BLOCK);
        for i in 0..lane.blocks {
            // The lane's chain is still zero: its input is the block itself.
            input.extend_from_slice(&lane.input(i, &self.subkeys));
        }
        input
    }
}

/// S2V's last string T for `plain`, as a CMAC lane, `d` being S2V's value after the associated
/// data: `plain` with `d` xored into its last 16 bytes ("xorend"), or, under a block,
/// `dbl(d) ⊕ (plain ‖ 10*)`.
fn last_step_lane(d: [u8; BLOCK], plain: &[u8]) -> Lane<'_> {
    if plain.len() >= BLOCK {
        // The bytes before the last 16..=31 go as they are, the rest is the tail.
        let whole = (plain.len() - BLOCK) / BLOCK * BLOCK;
        let mut tail = [0u8; 2 * BLOCK];
        let tail_len = plain.len() - whole;
        tail[..tail_len].copy_from_slice(&plain[whole..]);
        let end = xor(tail[tail_len - BLOCK..tail_len].try_into().unwrap_or([0; BLOCK]), &d);
        tail[tail_len - BLOCK..tail_len].copy_from_slice(&end);
        Lane::new(&plain[..whole], &tail[..tail_len])
    } else {
        let mut padded = [0u8; BLOCK];
        padded[..plain.len()].copy_from_slice(plain);
        padded[plain.len()] = 0x80;
        Lane::new(&[], &xor(dbl(d), &padded))
    }
}

/// Whether `mac` is `tag`, compared in constant time (every byte looked at, whatever differs).
pub fn tags_equal(tag: &[u8], mac: &[u8; BLOCK]) -> bool {
    tag.len() == BLOCK && tag.iter().zip(mac).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// The first counter block of AES-SIV's CTR pass for the synthetic IV `tag` (bits 63 and 31
/// cleared). From there the counter only ever adds one to its low 64 bits without carrying out
/// of them (bit 63 starts clear), so an AES-CTR counting in 64 bits gives the same keystream.
pub fn ctr_counter_block(tag: &[u8; BLOCK]) -> [u8; BLOCK] {
    (u128::from_be_bytes(*tag) & !((1u128 << 63) | (1u128 << 31))).to_be_bytes()
}

impl<C: BlockCipherEncrypt + BlockSizeUser<BlockSize = U16> + KeyInit> SivBatch<C> {
    /// `key`: K1 ‖ K2, twice the cipher's key (64 bytes for AES-256-SIV).
    pub fn new(key: &[u8]) -> Option<Self> {
        let half = key.len() / 2;
        let mac = C::new_from_slice(&key[..half]).ok()?;
        let ctr = C::new_from_slice(&key[half..]).ok()?;
        if key.len() != 2 * half {
            return None;
        }
        let mut l = Block::<C>::default();
        mac.encrypt_block(&mut l);
        let complete = dbl(l.0);
        let subkeys = Subkeys { complete, padded: dbl(complete) };
        let mut siv = SivBatch { mac, ctr, zero_mac: [0; BLOCK], subkeys };
        siv.zero_mac = siv.cmac(&mut [Lane::of(&[0u8; BLOCK])])[0];
        Some(siv)
    }

    /// S2V's last step for messages with associated data `ad` (see `S2vFinish`).
    pub fn s2v_finish(&self, ad: &[u8]) -> S2vFinish {
        let ad_mac = self.cmac(&mut [Lane::of(ad)])[0];
        S2vFinish { d: xor(dbl(self.zero_mac), &ad_mac), subkeys: self.subkeys.clone() }
    }

    /// The CMACs of all lanes, their chains advanced together.
    fn cmac(&self, lanes: &mut [Lane<'_>]) -> Vec<[u8; BLOCK]> {
        self.mac.encrypt_with_backend(CmacRun { lanes, subkeys: &self.subkeys });
        lanes.iter().map(|lane| lane.chain).collect()
    }

    /// S2V over (associated data, plaintext) for every item: the synthetic IVs.
    fn s2v(&self, items: &[(&[u8], &[u8])]) -> Vec<[u8; BLOCK]> {
        let mut ad_lanes: Vec<Lane<'_>> = items.iter().map(|(ad, _)| Lane::of(ad)).collect();
        let ad_macs = self.cmac(&mut ad_lanes);
        let mut lanes = Vec::with_capacity(items.len());
        for ((_, plain), ad_mac) in items.iter().zip(ad_macs) {
            lanes.push(last_step_lane(xor(dbl(self.zero_mac), &ad_mac), plain));
        }
        self.cmac(&mut lanes)
    }

    /// XOR AES-CTR's keystream from the IV `v` (bits 63 and 31 cleared) into `data`.
    fn ctr_xor(&self, v: &[u8; BLOCK], data: &mut [u8]) {
        let mut counter = u128::from_be_bytes(ctr_counter_block(v));
        let mut keystream: Vec<Block<C>> = Vec::with_capacity(CTR_CHUNK_BLOCKS);
        for chunk in data.chunks_mut(CTR_CHUNK_BLOCKS * BLOCK) {
            keystream.clear();
            for _ in 0..chunk.len().div_ceil(BLOCK) {
                keystream.push(Array(counter.to_be_bytes()));
                counter = counter.wrapping_add(1);
            }
            self.ctr.encrypt_blocks(&mut keystream);
            for (bytes, key) in chunk.chunks_mut(BLOCK).zip(&keystream) {
                if let Ok(block) = <&mut [u8; BLOCK]>::try_from(&mut *bytes) {
                    *block = xor(*block, &key.0);
                } else {
                    for (b, k) in bytes.iter_mut().zip(key.0.iter()) {
                        *b ^= k;
                    }
                }
            }
        }
    }

    /// Seal every (associated data, plaintext): tag ‖ ciphertext each.
    pub fn seal(&self, items: &[(&[u8], &[u8])]) -> Vec<Vec<u8>> {
        let tags = self.s2v(items);
        items
            .iter()
            .zip(tags)
            .map(|((_, plain), tag)| {
                let mut out = Vec::with_capacity(BLOCK + plain.len());
                out.extend_from_slice(&tag);
                out.extend_from_slice(plain);
                self.ctr_xor(&tag, &mut out[BLOCK..]);
                out
            })
            .collect()
    }

    /// Open every (associated data, tag ‖ ciphertext): the plaintext, or `None` where it is
    /// too short or does not authenticate.
    pub fn open(&self, items: &[(&[u8], &[u8])]) -> Vec<Option<Vec<u8>>> {
        let mut plains: Vec<Option<Vec<u8>>> = items
            .iter()
            .map(|(_, sealed)| {
                let (tag, body) = sealed.split_first_chunk::<BLOCK>()?;
                let mut plain = body.to_vec();
                self.ctr_xor(tag, &mut plain);
                Some(plain)
            })
            .collect();
        // Decrypted with the received tag as IV; now S2V over what came out must give that tag.
        let decrypted: Vec<usize> = (0..plains.len()).filter(|&i| plains[i].is_some()).collect();
        let inputs: Vec<(&[u8], &[u8])> =
            decrypted.iter().map(|&i| (items[i].0, plains[i].as_deref().unwrap_or_default())).collect();
        let tags = self.s2v(&inputs);
        let authentic: Vec<bool> =
            decrypted.iter().zip(&tags).map(|(&i, tag)| tags_equal(&items[i].1[..BLOCK], tag)).collect();
        drop(inputs);
        for (&i, authentic) in decrypted.iter().zip(authentic) {
            if !authentic {
                plains[i] = None;
            }
        }
        plains
    }
}
