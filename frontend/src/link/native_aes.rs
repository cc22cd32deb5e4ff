//! The browser's own AES for opening and sealing long frames in the link worker: WebCrypto
//! runs AES in native code (AES-NI where the CPU has it), while the WASM build has only a
//! software AES, which opened a 20 MB flood at ~20 MB/s. The protocol crate decides what is
//! encrypted and checks what comes back (`channel::OpenJob`, `SealJob`, `Opener::finish`); this
//! module only runs AES-CTR and AES-CBC over it (`native_aes.js`).
//!
//! Invariants:
//! - Keys are imported once per link and direction, non-extractable; a job of a new link
//!   imports its own.
//! - Every failure comes back as `Opened::Failed` (the connection then fails) or
//!   `Sealed::Failed` (the frame is sealed in WASM instead): nothing here decides whether a
//!   frame is authentic.

use std::future::Future;

use tether_protocol::channel::{OpenJob, Opened, SealJob, Sealed};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

/// Sealed frames at least this long are opened by WebCrypto; shorter ones (echoes, credit) in
/// WASM at once. Each WebCrypto call is a round trip to the browser's crypto thread, which costs
/// about what the software AES spends on a few KiB.
pub const NATIVE_AES_MIN_BYTES: usize = 4 << 10; // 4 KiB

#[wasm_bindgen(module = "/src/link/native_aes.js")]
extern "C" {
    #[wasm_bindgen(js_name = nativeAesAvailable)]
    fn native_aes_available() -> bool;
    #[wasm_bindgen(js_name = importKeys)]
    fn import_keys(mac_key: &[u8], ctr_key: &[u8]) -> js_sys::Promise;
    #[wasm_bindgen(js_name = ctrXor)]
    fn ctr_xor(key: &JsValue, counter: &[u8], data: &[u8]) -> js_sys::Promise;
    #[wasm_bindgen(js_name = cbcMac)]
    fn cbc_mac(key: &JsValue, data: &[u8]) -> js_sys::Promise;
}

/// WebCrypto's AES, with the current link's keys.
pub struct NativeAes {
    /// The keys frames are opened with and sealed with (each direction has its own).
    open_keys: Keys,
    seal_keys: Keys,
}

/// One direction's keys: the link they are of, and their import (`[cbc, ctr]` once resolved).
#[derive(Default)]
struct Keys(Option<(u64, js_sys::Promise)>);

impl Keys {
    fn of(&mut self, link: u64, (mac_key, ctr_key): (&[u8], &[u8])) -> js_sys::Promise {
        match &self.0 {
            Some((of, keys)) if *of == link => keys.clone(),
            _ => {
                let keys = import_keys(mac_key, ctr_key);
                self.0 = Some((link, keys.clone()));
                keys
            }
        }
    }
}

impl NativeAes {
    /// `None` where the browser has no WebCrypto (a page not served from a secure origin).
    pub fn new() -> Option<NativeAes> {
        native_aes_available().then(|| NativeAes { open_keys: Keys::default(), seal_keys: Keys::default() })
    }

    /// Open `job` of `link`: what to tell the client back.
    pub fn open(&mut self, link: u64, job: OpenJob) -> impl Future<Output = Opened> + 'static {
        let keys = self.open_keys.of(link, job.keys());
        async move { open(keys, job).await.unwrap_or_else(|e| Opened::Failed(format!("WebCrypto: {e:?}"))) }
    }

    /// Seal `job` of `link`: what to tell the client back.
    pub fn seal(&mut self, link: u64, job: SealJob) -> impl Future<Output = Sealed> + 'static {
        let keys = self.seal_keys.of(link, job.keys());
        async move { seal(keys, job).await.unwrap_or_else(|e| Sealed::Failed(format!("WebCrypto: {e:?}"))) }
    }
}

async fn open(keys: js_sys::Promise, job: OpenJob) -> Result<Opened, JsValue> {
    let keys: js_sys::Array = JsFuture::from(keys).await?.into();
    let plain = JsFuture::from(ctr_xor(&keys.get(1), &job.counter_block(), job.ciphertext())).await?;
    let plain = js_sys::Uint8Array::new(&plain).to_vec();
    let mac = block(JsFuture::from(cbc_mac(&keys.get(0), &job.mac_input(&plain))).await?)?;
    Ok(Opened::Done { plain, mac })
}

async fn seal(keys: js_sys::Promise, job: SealJob) -> Result<Sealed, JsValue> {
    let keys: js_sys::Array = JsFuture::from(keys).await?.into();
    let tag = block(JsFuture::from(cbc_mac(&keys.get(0), &job.mac_input())).await?)?;
    // CTR's encryption is its decryption: the same keystream XORed in.
    let ciphertext = JsFuture::from(ctr_xor(&keys.get(1), &SealJob::counter_block(&tag), job.plaintext())).await?;
    Ok(Sealed::Done { tag, ciphertext: js_sys::Uint8Array::new(&ciphertext).to_vec() })
}

/// A 16-byte block out of a `Uint8Array`.
fn block(value: JsValue) -> Result<[u8; 16], JsValue> {
    js_sys::Uint8Array::new(&value).to_vec().try_into().map_err(|_| JsValue::from_str("not a 16-byte block"))
}
