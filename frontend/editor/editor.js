// The code editor (CodeMirror 6), loaded by the web app only when the first editor opens, so the
// first prompt never pays for it. The app (Rust, frontend/src/codemirror.rs) reaches it through
// `globalThis.tetherEditor`; this file only knows CodeMirror, never the host or the protocol.
//
// Invariants the app relies on:
// - Bytes outside an edit survive a save: the document is split and joined with the file's own
//   line separator (`lineSeparator`), so CRLF stays CRLF, a lone CR or LF inside stays a
//   character, and a missing final newline stays missing. `text()` joins with that separator.
// - `onChange(dirty)` fires whenever the document starts or stops matching what was last saved.
//   A save takes its text with `beginSave()`; `markSaved()` then marks that text (not what was
//   typed while the save travelled) as what the file holds.

import { EditorState, Compartment } from "@codemirror/state";
import {
  EditorView, keymap, lineNumbers, highlightActiveLine, highlightActiveLineGutter,
  highlightSpecialChars, drawSelection, rectangularSelection, crosshairCursor,
} from "@codemirror/view";
import {
  indentUnit, indentOnInput, bracketMatching, foldGutter, foldKeymap, syntaxHighlighting,
  defaultHighlightStyle, StreamLanguage,
} from "@codemirror/language";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import { search, searchKeymap, highlightSelectionMatches, gotoLine } from "@codemirror/search";
import { closeBrackets, closeBracketsKeymap } from "@codemirror/autocomplete";
import { oneDark } from "@codemirror/theme-one-dark";

const legacy = (load) => () => load().then((mode) => StreamLanguage.define(mode));

// Languages by what a file's name says; each is its own chunk, fetched when first needed.
const LANGUAGES = {
  rust: () => import("@codemirror/lang-rust").then((m) => m.rust()),
  python: () => import("@codemirror/lang-python").then((m) => m.python()),
  javascript: () => import("@codemirror/lang-javascript").then((m) => m.javascript({ jsx: true })),
  typescript: () => import("@codemirror/lang-javascript").then((m) => m.javascript({ typescript: true, jsx: true })),
  json: () => import("@codemirror/lang-json").then((m) => m.json()),
  yaml: () => import("@codemirror/lang-yaml").then((m) => m.yaml()),
  toml: legacy(() => import("@codemirror/legacy-modes/mode/toml").then((m) => m.toml)),
  markdown: () => import("@codemirror/lang-markdown").then((m) => m.markdown()),
  shell: legacy(() => import("@codemirror/legacy-modes/mode/shell").then((m) => m.shell)),
  cpp: () => import("@codemirror/lang-cpp").then((m) => m.cpp()),
  go: () => import("@codemirror/lang-go").then((m) => m.go()),
  html: () => import("@codemirror/lang-html").then((m) => m.html()),
  css: () => import("@codemirror/lang-css").then((m) => m.css()),
  sql: () => import("@codemirror/lang-sql").then((m) => m.sql()),
  dockerfile: legacy(() => import("@codemirror/legacy-modes/mode/dockerfile").then((m) => m.dockerFile)),
};

const BY_EXTENSION = {
  rs: "rust", py: "python", pyi: "python", js: "javascript", mjs: "javascript", cjs: "javascript",
  jsx: "javascript", ts: "typescript", mts: "typescript", cts: "typescript", tsx: "typescript",
  json: "json", jsonc: "json", yml: "yaml", yaml: "yaml", toml: "toml", md: "markdown",
  markdown: "markdown", sh: "shell", bash: "shell", zsh: "shell", ksh: "shell", c: "cpp", h: "cpp",
  cc: "cpp", cpp: "cpp", cxx: "cpp", hh: "cpp", hpp: "cpp", hxx: "cpp", go: "go", html: "html",
  htm: "html", css: "css", sql: "sql", dockerfile: "dockerfile",
};
const BY_NAME = {
  dockerfile: "dockerfile", containerfile: "dockerfile", ".bashrc": "shell", ".bash_profile": "shell",
  ".profile": "shell", ".zshrc": "shell", "cargo.lock": "toml", "pipfile": "toml",
};

/// The language for a file name (`null`: plain text).
function languageFor(name) {
  const lower = name.toLowerCase();
  if (BY_NAME[lower]) return BY_NAME[lower];
  if (lower.startsWith("dockerfile.")) return "dockerfile";
  const dot = lower.lastIndexOf(".");
  return dot > 0 ? BY_EXTENSION[lower.slice(dot + 1)] || null : null;
}

/// The indentation a file already uses: a tab, or the most common step between the widths of
/// neighbouring indented lines (2, 4 or 8 spaces); 4 spaces when it says nothing.
function indentationOf(text) {
  let tabs = 0;
  const steps = new Map();
  let last = 0;
  for (const line of text.split(/\r\n|\r|\n/, 5000)) {
    if (line.trim() === "") continue;
    if (line[0] === "\t") { tabs++; continue; }
    const width = line.length - line.trimStart().length;
    const step = Math.abs(width - last);
    if (step === 2 || step === 4 || step === 8) steps.set(step, (steps.get(step) || 0) + 1);
    last = width;
  }
  let best = 4;
  let seen = 0;
  for (const [step, count] of steps) if (count > seen) [best, seen] = [step, count];
  return tabs > seen ? "\t" : " ".repeat(best);
}

const THEME = EditorView.theme({
  "&": { height: "100%", fontSize: "14px" },
  ".cm-scroller": { fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace" },
});

function baseExtensions(options) {
  return [
    lineNumbers(), highlightActiveLineGutter(), highlightSpecialChars(), history(), foldGutter(),
    drawSelection(), EditorState.allowMultipleSelections.of(true), indentOnInput(),
    oneDark, syntaxHighlighting(defaultHighlightStyle, { fallback: true }), bracketMatching(), closeBrackets(),
    rectangularSelection(), crosshairCursor(), highlightActiveLine(), highlightSelectionMatches(),
    search({ top: true }), EditorState.lineSeparator.of(options.lineSeparator), THEME,
  ];
}

/// An editor in `parent`. options: { doc, name, lineSeparator ("\n" or "\r\n"), readOnly,
/// onChange(dirty), onSave() }.
function createEditor(parent, options) {
  const language = new Compartment();
  const editable = new Compartment();
  let saved = null;
  let saving = null;
  let dirty = false;
  const recheck = () => {
    const now = !view.state.doc.eq(saved);
    if (now !== dirty) { dirty = now; options.onChange(dirty); }
  };
  const save = () => { options.onSave(); return true; };
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc: options.doc,
      extensions: [
        baseExtensions(options),
        indentUnit.of(indentationOf(options.doc)),
        language.of([]),
        editable.of([EditorState.readOnly.of(options.readOnly), EditorView.editable.of(!options.readOnly)]),
        keymap.of([
          { key: "Mod-s", run: save, preventDefault: true },
          { key: "Mod-g", run: gotoLine, preventDefault: true },
          ...closeBracketsKeymap, ...defaultKeymap, ...searchKeymap, ...historyKeymap, ...foldKeymap,
          indentWithTab,
        ]),
        EditorView.updateListener.of((update) => { if (update.docChanged) recheck(); }),
      ],
    }),
  });
  saved = view.state.doc;
  const kind = languageFor(options.name);
  parent.dataset.language = kind || "text";
  if (kind) {
    LANGUAGES[kind]().then((support) => view.dispatch({ effects: language.reconfigure(support) }))
      .catch((e) => console.warn(`no highlighting for ${options.name}: ${e}`));
  }
  let merge = null;
  return {
    /// The document as the file's bytes will be (joined with its own line separator).
    text: () => view.state.sliceDoc(),
    /// The text a save writes; remembered, so `markSaved` marks exactly it.
    beginSave() {
      saving = view.state.doc;
      return view.state.sliceDoc();
    },
    /// The text `beginSave` gave is what the file holds now.
    markSaved() {
      saved = saving || view.state.doc;
      saving = null;
      recheck();
    },
    /// Replace the document with the disk's version (undo can still bring the edit back).
    reload(doc) {
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: doc } });
      saved = view.state.doc;
      saving = null;
      recheck();
    },
    /// Side by side: this editor's text (left) beside `theirs`, the disk's (right), in `into`.
    async compare(into, theirs) {
      const { MergeView } = await import("@codemirror/merge");
      this.closeCompare();
      const sides = [baseExtensions(options), EditorState.readOnly.of(true), EditorView.editable.of(false)];
      merge = new MergeView({
        a: { doc: view.state.sliceDoc(), extensions: sides },
        b: { doc: theirs, extensions: sides },
        parent: into,
      });
    },
    closeCompare() {
      if (merge) { merge.destroy(); merge = null; }
    },
    focus: () => view.focus(),
    destroy() { this.closeCompare(); view.destroy(); },
  };
}

globalThis.tetherEditor = { createEditor, languageFor };
