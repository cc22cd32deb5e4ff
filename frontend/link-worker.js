// Tether's link worker: one host's encrypted connection, off the page's main thread. The page
// starts it and posts the URL of the app's own script and its compiled WebAssembly module; this
// imports that script, which starts the same WASM build, whose `main` sees it runs in a worker
// and takes every message from then on (frontend/src/link/worker.rs). Nothing else runs here.
'use strict';

self.onmessage = async ({ data }) => {
  self.onmessage = null;
  try {
    const glue = await import(new URL(String(data.glue), self.location.origin).href);
    await glue.default({ module_or_path: data.module });
  } catch (e) {
    // Said the way the worker's own news is (link/messages.rs), so the page shows it.
    const failed = { Status: { status: { Failed: `cannot start the connection: ${e}` }, generation: 0 } };
    self.postMessage([[JSON.stringify(failed), null]]);
    self.close();
  }
};
