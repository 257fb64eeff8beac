/* global URL, setTimeout */
// Runs the Flux language server (@influxdata/flux-lsp-browser, WebAssembly) over Flux scripts and
// prints its diagnostics. Input on stdin: JSON array of scripts. Output on stdout: JSON array, one
// entry per script: { syntax: string[] (parser errors in the AST), diagnostics: LSP diagnostics }.
// A child process, because loading the package needs module hooks (see flux-lsp-hooks.mjs).
import { register } from "node:module";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

// The language server logs through console; stdout carries only the result.
for (const level of ["log", "info", "debug", "warn"]) {
  console[level] = (...args) => process.stderr.write(`${args.join(" ")}\n`);
}
register(new URL("./flux-lsp-hooks.mjs", import.meta.url));
const require = createRequire(import.meta.url);
const pkgDir = require.resolve("@influxdata/flux-lsp-browser/package.json").replace(/package\.json$/, "");
const flux = await import(pathToFileURL(`${pkgDir}flux-lsp-browser_bg.js`).href);

let input = "";
for await (const chunk of process.stdin) input += chunk;
const scripts = JSON.parse(input);

function syntaxErrors(node, out = []) {
  if (node && typeof node === "object") {
    if (Array.isArray(node.errors)) for (const e of node.errors) out.push(e.msg ?? JSON.stringify(e));
    for (const v of Object.values(node)) syntaxErrors(v, out);
  }
  return out;
}

const lsp = new flux.Lsp();
const waiting = new Map();
lsp.onMessage((raw) => {
  const msg = JSON.parse(String(raw));
  if (msg.method !== "textDocument/publishDiagnostics") return;
  const resolve = waiting.get(msg.params.uri);
  if (resolve) {
    waiting.delete(msg.params.uri);
    resolve(msg.params.diagnostics);
  }
});
void lsp.run();
const send = (o) => lsp.send(JSON.stringify({ jsonrpc: "2.0", ...o }));
await send({ id: 1, method: "initialize", params: { capabilities: {} } });
await send({ method: "initialized", params: {} });

const results = [];
for (const [i, text] of scripts.entries()) {
  const uri = `file:///query-${i}.flux`;
  const diagnostics = new Promise((resolve, reject) => {
    waiting.set(uri, resolve);
    setTimeout(() => reject(new Error(`no diagnostics from the Flux LSP for script ${i}`)), 20_000).unref();
  });
  await send({
    method: "textDocument/didOpen",
    params: { textDocument: { uri, languageId: "flux", version: 1, text } },
  });
  const ast = flux.parse(text);
  results.push({ syntax: syntaxErrors(ast), diagnostics: await diagnostics });
  await send({ method: "textDocument/didClose", params: { textDocument: { uri } } });
}
process.stdout.write(JSON.stringify(results));
process.exit(0);
