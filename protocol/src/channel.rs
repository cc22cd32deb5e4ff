//! Layer 4: the secure channel. Every frame after the handshake travels sealed inside an
//! `encrypted` frame.
//!
//! ```text
//! encrypted {ctr}  [ AES-256-SIV(key[direction], AD = "tether/v1 ctr" ‖ ctr as u64 BE, inner frame bytes) ]
//! ```
//!
//! Invariants:
//! - Each direction has its own key (see `keys`) and its own counter starting at 0; the sender
//!   uses every counter exactly once, in order.
//! - The receiver accepts only the counter it expects next and advances only after the frame
//!   authenticated. A lower counter is a replay, a higher one a drop or a reorder; a wrong tag is
//!   a forgery (bit flip, truncation, or a counter changed in the clear header, since the counter
//!   is also inside the authenticated data). Every failure is final for the connection.
//! - A shell may open and seal frames with an AES of its own (`siv::S2vFinish` says what it
//!   runs). Opening (`Opener::admit` → `OpenJob` → `finish`): the counter rules apply when a
//!   frame is admitted, and its tag is still compared here, in constant time, against the MAC
//!   the shell computed; nothing of a frame is used before that comparison passed. Sealing
//!   (`Sealer::reserve` → `job` → `Sealed::frame`): counters are taken here, each once, in
//!   order; what the shell makes of a job is what `seal_at` would have made, bit for bit.
//! - SIV is deterministic, which is safe here because (key, counter) never repeats.
//! - Over two paths at once (relay and data channel, see `paths`), frames are put back in
//!   counter order before the opener sees them, and copies of frames already opened (resent
//!   after a path failed) are dropped unopened; the opener's rules above still hold for what
//!   reaches it. Over the relay alone nothing is reordered: out of order is an error, as here.

use crate::error::{ChannelError, FrameError};
use crate::frame::{decode_exact, Frame, Header, MAX_PAYLOAD_BYTES};
use crate::keys::KEY_BYTES;
use crate::siv::{ctr_counter_block, tags_equal, Aes256SivBatch, S2vFinish};

/// SIV's synthetic IV (its authentication tag), prepended to every ciphertext.
pub const TAG_BYTES: usize = 16;
/// Largest message a transport carries between client and host: one encoded `encrypted` frame.
/// It equals a frame's payload cap, so the relay can wrap any of them in its `forward` frame,
/// and one limit holds end to end: nothing bigger is ever produced, so nothing is dropped.
pub const MAX_MESSAGE_BYTES: usize = MAX_PAYLOAD_BYTES;
/// What sealing adds around an inner frame: the tag, the `encrypted` header (under 48 bytes of
/// JSON for any counter) and the two length prefixes.
pub const SEAL_OVERHEAD_BYTES: usize = TAG_BYTES + 48 + 8;
/// Largest inner frame (encoded) that can be sealed into one message.
pub const MAX_SEALED_INNER_BYTES: usize = MAX_MESSAGE_BYTES - SEAL_OVERHEAD_BYTES;
/// Domain label inside the associated data.
const AD_LABEL: &[u8] = b"tether/v1 ctr";

fn associated_data(ctr: u64) -> [u8; AD_LABEL.len() + 8] {
    let mut ad = [0u8; AD_LABEL.len() + 8];
    ad[..AD_LABEL.len()].copy_from_slice(AD_LABEL);
    ad[AD_LABEL.len()..].copy_from_slice(&ctr.to_be_bytes());
    ad
}

/// AES-256-SIV under `key` (`siv`: bit for bit the `aes-siv` crate's, a little faster alone).
fn cipher(key: &[u8; KEY_BYTES]) -> Aes256SivBatch {
    // KEY_BYTES is AES-256-SIV's 64: a key of that length always makes a cipher.
    Aes256SivBatch::new(key).unwrap_or_else(|| unreachable!("a {KEY_BYTES}-byte key is an AES-256-SIV key"))
}

/// Seals outgoing frames for one direction.
pub struct Sealer {
    cipher: Aes256SivBatch,
    /// Kept for a shell that seals with an AES of its own (`SealJob::keys`).
    key: [u8; KEY_BYTES],
    next: u64,
}

/// An inner frame under its counter, to be sealed by the shell's own AES: AES-CBC under the MAC
/// key from a zero IV over `mac_input`, its last block, is the tag; AES-CTR under the CTR key
/// from `ctr_counter_block(tag)` over `plaintext` is the ciphertext (`Sealed`).
pub struct SealJob {
    ctr: u64,
    inner: Vec<u8>,
    finish: S2vFinish,
    key: [u8; KEY_BYTES],
}

impl SealJob {
    pub fn ctr(&self) -> u64 {
        self.ctr
    }

    pub fn plaintext(&self) -> &[u8] {
        &self.inner
    }

    /// What to CBC-MAC under the MAC key: the tag.
    pub fn mac_input(&self) -> Vec<u8> {
        self.finish.cbc_mac_input(&self.inner)
    }

    /// AES-CTR's first counter block for the tag (it counts in the low 64 bits).
    pub fn counter_block(tag: &[u8; TAG_BYTES]) -> [u8; TAG_BYTES] {
        ctr_counter_block(tag)
    }

    /// The MAC key (S2V's, for AES-CBC) and the CTR key, each an AES-256 key.
    pub fn keys(&self) -> (&[u8], &[u8]) {
        self.key.split_at(KEY_BYTES / 2)
    }
}

/// What the shell's AES made of a `SealJob`.
pub enum Sealed {
    Done {
        tag: [u8; TAG_BYTES],
        ciphertext: Vec<u8>,
    },
    /// Its AES failed: the frame is sealed here instead.
    Failed(String),
}

impl Sealed {
    /// The sealed frame, as `Sealer::seal_at` would have made it.
    pub fn frame(ctr: u64, tag: [u8; TAG_BYTES], ciphertext: Vec<u8>) -> Frame {
        let mut payload = Vec::with_capacity(TAG_BYTES + ciphertext.len());
        payload.extend_from_slice(&tag);
        payload.extend_from_slice(&ciphertext);
        Frame::new(Header::Encrypted { ctr }, payload)
    }
}

impl Sealer {
    pub fn new(key: &[u8; KEY_BYTES]) -> Self {
        Sealer { cipher: cipher(key), key: *key, next: 0 }
    }

    /// Seal a frame given as its wire bytes, consuming the next counter.
    pub fn seal_bytes(&mut self, inner: &[u8]) -> Result<Frame, ChannelError> {
        let sealed = self.seal_many(&[inner])?;
        sealed.into_iter().next().ok_or(ChannelError::CounterExhausted)
    }

    /// Seal several frames given as their wire bytes, in order, each consuming the next counter:
    /// as `seal_bytes` one by one, but with the AES-SIV of all of them run side by side (`siv`).
    /// Nothing is sealed (and no counter used) if any is too large.
    pub fn seal_many<B: AsRef<[u8]>>(&mut self, inners: &[B]) -> Result<Vec<Frame>, ChannelError> {
        let first = self.reserve(inners)?;
        let items: Vec<(u64, &[u8])> = (first..).zip(inners.iter().map(AsRef::as_ref)).collect();
        Ok(self.seal_at(&items))
    }

    /// Take counters for these frames, in order, without sealing them (`seal_at`, `job`): the
    /// first of them. Nothing is taken if any frame is too large.
    pub fn reserve<B: AsRef<[u8]>>(&mut self, inners: &[B]) -> Result<u64, ChannelError> {
        if let Some(inner) = inners.iter().map(AsRef::as_ref).find(|inner| inner.len() > MAX_SEALED_INNER_BYTES) {
            return Err(ChannelError::TooLarge { len: inner.len() });
        }
        let first = self.next;
        let count = u64::try_from(inners.len()).map_err(|_| ChannelError::CounterExhausted)?;
        self.next = first.checked_add(count).ok_or(ChannelError::CounterExhausted)?;
        Ok(first)
    }

    /// Seal frames under counters `reserve` gave them, side by side. Deterministic: a frame
    /// sealed here is the one a shell's AES makes of its `SealJob`, bit for bit.
    pub fn seal_at(&self, items: &[(u64, &[u8])]) -> Vec<Frame> {
        let ads: Vec<_> = items.iter().map(|&(ctr, _)| associated_data(ctr)).collect();
        let pairs: Vec<(&[u8], &[u8])> = ads.iter().zip(items).map(|(ad, (_, inner))| (&ad[..], *inner)).collect();
        let sealed = self.cipher.seal(&pairs);
        items.iter().zip(sealed).map(|(&(ctr, _), sealed)| Frame::new(Header::Encrypted { ctr }, sealed)).collect()
    }

    /// A frame under a reserved counter, as a job for the shell's AES.
    pub fn job(&self, ctr: u64, inner: Vec<u8>) -> SealJob {
        SealJob { ctr, finish: self.cipher.s2v_finish(&associated_data(ctr)), inner, key: self.key }
    }

    /// Seal a frame.
    pub fn seal(&mut self, inner: &Frame) -> Result<Frame, ChannelError> {
        let bytes = inner.encode().map_err(ChannelError::Inner)?;
        self.seal_bytes(&bytes)
    }

    /// The counter the next sealed frame will carry.
    pub fn next_counter(&self) -> u64 {
        self.next
    }
}

/// Opens incoming frames for one direction.
pub struct Opener {
    cipher: Aes256SivBatch,
    /// Kept for a shell that opens with an AES of its own (`OpenJob::keys`).
    key: [u8; KEY_BYTES],
    next: u64,
}

/// A sealed frame admitted in its turn, to be opened by the shell's own AES: AES-CTR under the
/// CTR key from `counter_block` over `ciphertext` gives the plaintext; AES-CBC under the MAC key
/// from a zero IV over `mac_input(plaintext)`, its last block, is the MAC that `Opener::finish`
/// compares with the tag.
pub struct OpenJob {
    ctr: u64,
    /// Tag ‖ ciphertext, at least a tag long.
    sealed: Vec<u8>,
    finish: S2vFinish,
    key: [u8; KEY_BYTES],
}

impl OpenJob {
    /// The frame's counter (what `Opener::finish` is told back).
    pub fn ctr(&self) -> u64 {
        self.ctr
    }

    /// The synthetic IV the frame came with.
    pub fn tag(&self) -> [u8; TAG_BYTES] {
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&self.sealed[..TAG_BYTES]);
        tag
    }

    /// AES-CTR's first counter block (it counts in the low 64 bits).
    pub fn counter_block(&self) -> [u8; TAG_BYTES] {
        ctr_counter_block(&self.tag())
    }

    pub fn ciphertext(&self) -> &[u8] {
        &self.sealed[TAG_BYTES..]
    }

    /// What to CBC-MAC under the MAC key once `plain` is out.
    pub fn mac_input(&self, plain: &[u8]) -> Vec<u8> {
        self.finish.cbc_mac_input(plain)
    }

    /// The MAC key (S2V's, for AES-CBC) and the CTR key, each an AES-256 key.
    pub fn keys(&self) -> (&[u8], &[u8]) {
        self.key.split_at(KEY_BYTES / 2)
    }
}

/// What the shell's AES made of an `OpenJob`.
pub enum Opened {
    /// The plaintext and the CBC-MAC it computed over `OpenJob::mac_input`.
    Done { plain: Vec<u8>, mac: [u8; TAG_BYTES] },
    /// Its AES failed (not the frame: a forgery still opens, to a MAC that does not match).
    Failed(String),
}

impl Opener {
    pub fn new(key: &[u8; KEY_BYTES]) -> Self {
        Opener { cipher: cipher(key), key: *key, next: 0 }
    }

    /// Take `frame` in its turn without opening it: the counter rules of `open_bytes`, and the
    /// counter advances now. What it holds must not be used until `finish` says it is authentic;
    /// a frame that fails there fails the connection, as any channel error does.
    pub fn admit(&mut self, frame: &Frame) -> Result<u64, ChannelError> {
        let ctr = self.its_turn(frame)?;
        self.next = ctr.saturating_add(1);
        Ok(ctr)
    }

    /// The counter of `frame` if it is the sealed frame expected next; why not otherwise.
    fn its_turn(&self, frame: &Frame) -> Result<u64, ChannelError> {
        let Header::Encrypted { ctr } = frame.header else {
            return Err(ChannelError::NotEncrypted(header_kind(&frame.header)));
        };
        if ctr < self.next {
            return Err(ChannelError::Replayed { expected: self.next, got: ctr });
        }
        if ctr > self.next {
            return Err(ChannelError::OutOfOrder { expected: self.next, got: ctr });
        }
        Ok(ctr)
    }

    /// An admitted frame's payload, as a job for the shell's AES; the payload back when it is
    /// too short to hold a tag (open it here: it fails as a forgery).
    pub fn job(&self, ctr: u64, sealed: Vec<u8>) -> Result<OpenJob, Vec<u8>> {
        if sealed.len() < TAG_BYTES {
            return Err(sealed);
        }
        Ok(OpenJob { ctr, sealed, finish: self.cipher.s2v_finish(&associated_data(ctr)), key: self.key })
    }

    /// Open an admitted frame here: its inner frame, or why not.
    pub fn open_admitted(&self, ctr: u64, sealed: &[u8]) -> Result<Frame, ChannelError> {
        let opened = self.cipher.open(&[(&associated_data(ctr)[..], sealed)]).pop().flatten();
        Self::inner_frame(&opened.ok_or(ChannelError::Forged { ctr })?)
    }

    /// The inner frame of a job the shell opened, if its MAC equals the tag (compared in
    /// constant time).
    pub fn finish(ctr: u64, tag: &[u8; TAG_BYTES], opened: Opened) -> Result<Frame, ChannelError> {
        match opened {
            Opened::Done { plain, mac } => {
                if !tags_equal(tag, &mac) {
                    return Err(ChannelError::Forged { ctr });
                }
                Self::inner_frame(&plain)
            }
            Opened::Failed(why) => Err(ChannelError::CipherFailed { ctr, why }),
        }
    }

    /// Authenticate and decrypt, returning the inner frame's wire bytes.
    pub fn open_bytes(&mut self, frame: &Frame) -> Result<Vec<u8>, ChannelError> {
        let ctr = self.its_turn(frame)?;
        let opened = self.cipher.open(&[(&associated_data(ctr)[..], &frame.payload[..])]).pop().flatten();
        let plain = opened.ok_or(ChannelError::Forged { ctr })?;
        // Counter space is u64 and the sealer refuses to wrap, so an authentic frame never has
        // ctr = u64::MAX; saturate rather than trust that.
        self.next = ctr.saturating_add(1);
        Ok(plain)
    }

    /// Authenticate, decrypt and decode the inner frame. An inner `encrypted` frame is refused:
    /// nesting has no use and would only widen what a peer can make us do.
    pub fn open(&mut self, frame: &Frame) -> Result<Frame, ChannelError> {
        let plain = self.open_bytes(frame)?;
        Self::inner_frame(&plain)
    }

    /// Open several frames that arrived in a row, in order: as `open` one by one, but with the
    /// AES-SIV of all of them run side by side (`siv`). The inner frames of those that opened,
    /// and the error that stopped the rest (nothing after a frame that fails is opened).
    pub fn open_many(&mut self, frames: &[Frame]) -> (Vec<Frame>, Option<ChannelError>) {
        // Those whose counters follow on; the first that does not stops the batch there.
        let mut run = Vec::with_capacity(frames.len());
        let mut stopped = None;
        for (expected, frame) in (self.next..).zip(frames) {
            match frame.header {
                Header::Encrypted { ctr } if ctr == expected => run.push(frame),
                _ => {
                    stopped = Some(frame);
                    break;
                }
            }
        }
        let ads: Vec<_> = (self.next..).zip(&run).map(|(ctr, _)| associated_data(ctr)).collect();
        let items: Vec<(&[u8], &[u8])> = ads.iter().zip(&run).map(|(ad, f)| (&ad[..], &f.payload[..])).collect();
        let mut opened = Vec::with_capacity(run.len());
        for plain in self.cipher.open(&items) {
            let ctr = self.next;
            let inner = plain.ok_or(ChannelError::Forged { ctr }).and_then(|plain| Self::inner_frame(&plain));
            match inner {
                Ok(inner) => {
                    self.next = ctr.saturating_add(1);
                    opened.push(inner);
                }
                Err(error) => return (opened, Some(error)),
            }
        }
        // The frame that broke the run gets the error `open` would give it.
        let error = stopped.and_then(|frame| self.open(frame).err());
        (opened, error)
    }

    /// The inner frame in `plain`; never a nested encrypted, auth or relay frame.
    fn inner_frame(plain: &[u8]) -> Result<Frame, ChannelError> {
        let inner = decode_exact(plain).map_err(ChannelError::Inner)?;
        if matches!(inner.header, Header::Encrypted { .. } | Header::Auth(_) | Header::Relay(_)) {
            return Err(ChannelError::Inner(FrameError::Malformed(format!(
                "{} frame inside the secure channel",
                header_kind(&inner.header)
            ))));
        }
        Ok(inner)
    }

    /// The counter expected next.
    pub fn next_counter(&self) -> u64 {
        self.next
    }
}

/// Short name of a frame type, for errors.
pub fn header_kind(header: &Header) -> &'static str {
    match header {
        Header::Auth(_) => "auth",
        Header::Encrypted { .. } => "encrypted",
        Header::Data { .. } => "data",
        Header::Control(_) => "control",
        Header::Cmd { .. } => "cmd",
        Header::Webrtc { .. } => "webrtc",
        Header::Relay(_) => "relay",
    }
}
