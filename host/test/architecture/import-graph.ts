/**
 * The repository's own import graph, read from the sources: which file imports which (relative imports
 * resolved to repository paths, bare ones such as "aedes" or "node:fs" kept as written). The dependency rules
 * and the unit-test classification are checked against it, so a rule holds for every file without anyone
 * keeping a list in step.
 *
 * Parsing is lexical (import/export … from, import "x", import("x")) after dropping comments: enough for a
 * codebase that spells its imports plainly, which eslint's consistent-type-imports keeps true.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

const SKIP_DIRS = new Set(["node_modules", ".git", ".state", "build", "coverage", "dashboards"]);

/** Every .ts file of the repository, as a path relative to the root with "/" separators. */
export function sourceFiles(root = ROOT): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      if (SKIP_DIRS.has(name)) continue;
      const full = join(dir, name);
      if (statSync(full).isDirectory()) walk(full);
      else if (name.endsWith(".ts") && !name.endsWith(".d.ts")) out.push(toRepoPath(full, root));
    }
  };
  walk(root);
  return out.sort();
}

const toRepoPath = (full: string, root: string): string => relative(root, full).split(sep).join("/");

const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)["']([^"']+)["']/gm;

/** The module specifiers a source text imports, comments removed first. */
export function specifiers(text: string): string[] {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  return [...code.matchAll(SPECIFIER)].map((m) => m[1]!);
}

export interface ImportEdge {
  /** The specifier as written. */
  spec: string;
  /** Repository path of the imported file, or undefined for a package or node: builtin. */
  target?: string;
}

export class ImportGraph {
  readonly files: readonly string[];
  readonly #root: string;
  readonly #text = new Map<string, string>();
  readonly #edges = new Map<string, ImportEdge[]>();

  constructor(root = ROOT) {
    this.#root = root;
    this.files = sourceFiles(root);
  }

  text(file: string): string {
    let t = this.#text.get(file);
    if (t === undefined) {
      t = readFileSync(join(this.#root, file), "utf8");
      this.#text.set(file, t);
    }
    return t;
  }

  imports(file: string): ImportEdge[] {
    let edges = this.#edges.get(file);
    if (!edges) {
      edges = specifiers(this.text(file)).map((spec) =>
        spec.startsWith(".") ? { spec, target: this.#resolve(file, spec) } : { spec },
      );
      this.#edges.set(file, edges);
    }
    return edges;
  }

  /** The file and every repository file it reaches through imports. */
  closure(file: string): Set<string> {
    const seen = new Set<string>([file]);
    const stack = [file];
    while (stack.length) {
      for (const e of this.imports(stack.pop()!)) {
        if (e.target?.endsWith(".ts") && !seen.has(e.target)) {
          seen.add(e.target);
          stack.push(e.target);
        }
      }
    }
    return seen;
  }

  #resolve(from: string, spec: string): string {
    const base = resolve(this.#root, dirname(from), spec);
    for (const candidate of [base, `${base}.ts`, join(base, "index.ts")]) {
      try {
        if (statSync(candidate).isFile()) return toRepoPath(candidate, this.#root);
      } catch {
        // try the next form
      }
    }
    // Unresolved (a generated file, a typo tsc would catch): keep the path so a rule can still match it.
    return toRepoPath(base, this.#root);
  }
}
