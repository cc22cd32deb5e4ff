// The browser's own AES (WebCrypto: native code, where WASM has only a software AES), for the
// link worker to open and seal long frames with. The protocol crate says what to run it over
// (`channel::OpenJob`, `SealJob`); this file only runs AES-CTR and AES-CBC. Every byte array passed in is
// a view of WASM memory: WebCrypto copies its inputs when called, so each is handed over before
// the first `await` and never read after it.

export function nativeAesAvailable() {
  return Boolean(globalThis.crypto && globalThis.crypto.subtle);
}

// [AES-CBC key (S2V's MAC key), AES-CTR key], both non-extractable.
export function importKeys(macKey, ctrKey) {
  const subtle = crypto.subtle;
  return Promise.all([
    subtle.importKey('raw', macKey, 'AES-CBC', false, ['encrypt']),
    subtle.importKey('raw', ctrKey, 'AES-CTR', false, ['decrypt']),
  ]);
}

// AES-CTR from `counter`, counting in its low 64 bits: an ArrayBuffer as long as `data`. Its
// encryption and decryption are one XOR, so sealing uses it too (the key is for 'decrypt').
export function ctrXor(key, counter, data) {
  return crypto.subtle.decrypt({ name: 'AES-CTR', counter, length: 64 }, key, data);
}

// AES-CBC from a zero IV over `data` (a whole number of blocks): its last block before the
// padding block WebCrypto always adds — the CBC-MAC.
export async function cbcMac(key, data) {
  const end = data.byteLength;
  const out = await crypto.subtle.encrypt({ name: 'AES-CBC', iv: new Uint8Array(16) }, key, data);
  return new Uint8Array(out, end - 16, 16).slice();
}
