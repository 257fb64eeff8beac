// Checks Flux scripts with the Flux language server (WebAssembly build, run in a child Node process).
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export interface FluxDiagnostic {
  message: string;
  severity?: number;
  range?: { start: { line: number; character: number }; end: { line: number; character: number } };
}
export interface FluxCheck {
  syntax: string[];
  diagnostics: FluxDiagnostic[];
}

const CHILD = join(dirname(fileURLToPath(import.meta.url)), "flux-lsp-child.mjs");

export function checkFlux(scripts: readonly string[]): Promise<FluxCheck[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD], { stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => (out += c));
    child.stderr.setEncoding("utf8").on("data", (c: string) => (err += c));
    child.once("error", reject);
    child.once("exit", (code) => {
      if (code !== 0) return reject(new Error(`flux-check exited ${code}: ${err.trim().slice(-2000)}`));
      try {
        resolve(JSON.parse(out) as FluxCheck[]);
      } catch (e) {
        reject(new Error(`flux-check printed no JSON: ${String(e)}; stderr: ${err.slice(-1000)}`));
      }
    });
    child.stdin.end(JSON.stringify(scripts));
  });
}
