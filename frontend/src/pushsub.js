// Subscribing this browser to a host's web pushes: the service worker's push manager, with the
// host's VAPID public key (base64url). Returns the subscription as JSON (endpoint, keys).

function bytes(base64url) {
  const text = atob(base64url.replace(/-/g, '+').replace(/_/g, '/'));
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

export async function subscribePush(key) {
  const registration = await navigator.serviceWorker.ready;
  const subscription = await registration.pushManager.subscribe({
    userVisibleOnly: true,
    applicationServerKey: bytes(key),
  });
  return JSON.stringify(subscription.toJSON());
}
