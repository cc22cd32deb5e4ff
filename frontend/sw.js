// Tether's service worker streams downloads to disk, and shows the web pushes a host sends a
// remembered browser (at the end of this file). Downloads: the page hands
// a download's bytes over a MessageChannel as they arrive through the encrypted connection; this
// worker answers the page's navigation to /tether-download/ID with a streamed attachment. Nothing
// holds the whole file, and the stream pulls (backpressure) before the page credits the host for
// more. Every other request goes to the network untouched; nothing is cached.
'use strict';

const PREFIX = '/tether-download/';
const pending = new Map();

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('message', (event) => {
  const data = event.data || {};
  const port = event.ports && event.ports[0];
  if (typeof data.id !== 'string' || !/^[0-9a-f]{32}$/.test(data.id) || !port) return;
  pending.set(data.id, { name: String(data.name || 'download'), size: Number(data.size), port });
  port.postMessage({ ready: true });
});

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (url.origin !== self.location.origin || !url.pathname.startsWith(PREFIX)) return;
  const entry = pending.get(url.pathname.slice(PREFIX.length));
  if (!entry) return;
  pending.delete(url.pathname.slice(PREFIX.length));
  const { name, size, port } = entry;
  const stream = new ReadableStream({
    start(controller) {
      port.onmessage = ({ data }) => {
        if (data.chunk) controller.enqueue(new Uint8Array(data.chunk));
        else if (data.end) controller.close();
        else if (data.abort) controller.error(new Error(String(data.abort)));
      };
    },
    pull() {
      port.postMessage({ pull: true });
    },
    cancel() {
      port.postMessage({ cancelled: true });
    },
  }, { highWaterMark: 4 });
  const headers = {
    'Content-Type': 'application/octet-stream',
    'Content-Disposition': "attachment; filename*=UTF-8''" + encodeURIComponent(name),
    'X-Content-Type-Options': 'nosniff',
  };
  if (Number.isSafeInteger(size) && size >= 0) headers['Content-Length'] = String(size);
  event.respondWith(new Response(stream, { headers }));
});

// A push from a host (RFC 8291, opened by the browser before it reaches us): host name, session
// title and why — never output. Shown as a notification; a click focuses an open page, or opens
// the relay's page.
self.addEventListener('push', (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch (e) {
    data = {};
  }
  const host = String(data.host || 'a host');
  const title = `${host}: ${String(data.title || 'a session')}`;
  const options = { body: String(data.reason || ''), tag: `${host}/${String(data.session || '')}` };
  event.waitUntil(self.registration.showNotification(title, options));
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  event.waitUntil(self.clients.matchAll({ type: 'window' }).then((open) =>
    open.length ? open[0].focus() : self.clients.openWindow('/')));
});
