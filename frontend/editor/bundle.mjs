// Bundles the editor (CodeMirror 6 and its languages, from node_modules) into build/: run by
// Trunk before each build (see Trunk.toml), which copies build/ to dist/editor/. One entry
// module for the editor itself and one chunk per language, fetched when a file needs it.
import { build } from "esbuild";
import { rmSync } from "node:fs";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
const outdir = here + "build";
rmSync(outdir, { recursive: true, force: true }); // no stale chunks from an earlier build

await build({
  entryPoints: [here + "editor.js"],
  outdir,
  bundle: true,
  splitting: true,
  format: "esm",
  minify: true,
  target: ["es2020"],
  entryNames: "[name]",
  chunkNames: "chunk-[hash]",
  legalComments: "none",
  logLevel: "warning",
});
