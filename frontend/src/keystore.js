// This browser's device key: one HMAC-SHA256 key, made by WebCrypto as non-extractable and kept
// in IndexedDB (a CryptoKey is stored as it is; no script can read its bytes back out, only ask
// for signatures while it runs on this origin). A host's device secret is the key's signature
// over a label naming the host and the device id (`device_secret_label` in the protocol crate),
// so each host gets its own secret and none of them is ever stored.

const DB_NAME = 'tether';
const STORE = 'keys';
const KEY_NAME = 'device';

function done(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = (event) => {
      event.preventDefault();
      reject(request.error);
    };
  });
}

function openDb() {
  const request = indexedDB.open(DB_NAME, 1);
  request.onupgradeneeded = () => request.result.createObjectStore(STORE);
  return done(request);
}

function load(db) {
  return done(db.transaction(STORE).objectStore(STORE).get(KEY_NAME));
}

// The device secret for `label` (32 bytes), or null when this browser has no key and `create`
// is false (its site data was cleared: nothing to prove with).
export async function deviceSecret(label, create) {
  const db = await openDb();
  try {
    let key = await load(db);
    if (!key && create) {
      const fresh = await crypto.subtle.generateKey({ name: 'HMAC', hash: 'SHA-256', length: 256 }, false, ['sign']);
      // `add`, not `put`: a key another tab stored meanwhile is kept, and used below.
      await done(db.transaction(STORE, 'readwrite').objectStore(STORE).add(fresh, KEY_NAME)).catch(() => {});
      key = await load(db);
    }
    if (!key) {
      return null;
    }
    return new Uint8Array(await crypto.subtle.sign('HMAC', key, new TextEncoder().encode(label)));
  } finally {
    db.close();
  }
}
