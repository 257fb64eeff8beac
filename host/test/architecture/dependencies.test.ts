// The direction of the repository's dependencies, checked on every file (see README, "Project layout"):
// shared helpers sit below everyone who uses them, test kits stay with the tests and the benchmarks, the
// firmware's modules import nothing but each other.
import { describe, expect, it } from "vitest";
import { ImportGraph, type ImportEdge } from "./import-graph";

const graph = new ImportGraph();

interface Rule {
  name: string;
  applies: (file: string) => boolean;
  forbids: (edge: ImportEdge, file: string) => boolean;
}

const under =
  (...folders: string[]) =>
  (path: string | undefined): boolean =>
    path !== undefined && folders.some((f) => path.startsWith(f));

/** Source that ships (CLIs, services, firmware), as opposed to tests, test kits and fixtures. */
const shipped = under(
  "host/src/",
  "pki/src/",
  "manifests/src/",
  "infra/grafana/src/",
  "firmware/src/",
  "shared/",
);
const testCode = (path: string | undefined): boolean => path !== undefined && /^[^/]+\/test\//.test(path);

const RULES: Rule[] = [
  {
    name: "pki, manifests and infra do not import host/src/state (the state folder helpers live in shared/)",
    applies: under("pki/", "manifests/", "infra/"),
    forbids: (e) => under("host/src/state/")(e.target),
  },
  {
    name: "the PKI, the manifests and the dashboard generator sit below host/ and import nothing of it",
    applies: under("pki/src/", "manifests/src/", "infra/grafana/src/"),
    forbids: (e) => under("host/")(e.target),
  },
  {
    name: "shared/ is the bottom layer: it imports no other repository file",
    applies: under("shared/"),
    forbids: (e) => e.target !== undefined && !under("shared/")(e.target),
  },
  {
    name: "shipped source imports no test code",
    applies: shipped,
    forbids: (e) => testCode(e.target),
  },
  {
    name: "only the benchmarks import the test kit (host/testkit)",
    applies: (f) => shipped(f) && !f.startsWith("host/src/bench/"),
    forbids: (e) => under("host/testkit/")(e.target),
  },
  {
    name: "the test kit sits below the tests",
    applies: under("host/testkit/"),
    forbids: (e) => testCode(e.target),
  },
  {
    name: "the embedded Aedes broker lives with the other broker code (host/src/broker)",
    applies: (f) => !f.startsWith("host/src/broker/") && !testCode(f),
    forbids: (e) => e.spec === "aedes" || e.spec.startsWith("aedes/"),
  },
  {
    name: "firmware/src imports only firmware/src: no Node, no host code (it runs on Moddable XS)",
    applies: under("firmware/src/"),
    forbids: (e) => (e.target === undefined ? true : !under("firmware/src/")(e.target)),
  },
  {
    name: "the envelope does not import the payload layer (telemetry-message binds the two, one way)",
    applies: under("firmware/src/envelope/"),
    forbids: (e) => under("firmware/src/payload/")(e.target),
  },
];

describe("dependency rules", () => {
  it("the graph sees the repository", () => {
    expect(graph.files.length).toBeGreaterThan(200);
    expect(graph.imports("firmware/src/payload/telemetry-message.ts").map((e) => e.target)).toContain(
      "firmware/src/envelope/envelope.ts",
    );
  });

  for (const rule of RULES) {
    it(rule.name, () => {
      const broken: string[] = [];
      for (const file of graph.files.filter(rule.applies))
        for (const edge of graph.imports(file))
          if (rule.forbids(edge, file)) broken.push(`${file} imports ${edge.target ?? edge.spec}`);
      expect(broken).toEqual([]);
    });
  }

  it("firmware/src folders form no cycle", () => {
    const folderOf = (f: string): string => f.split("/").slice(0, 3).join("/");
    const edges = new Map<string, Set<string>>();
    for (const file of graph.files.filter(under("firmware/src/")))
      for (const e of graph.imports(file)) {
        if (!under("firmware/src/")(e.target)) continue;
        const a = folderOf(file);
        const b = folderOf(e.target!);
        if (a !== b) edges.set(a, (edges.get(a) ?? new Set()).add(b));
      }
    const cycles: string[] = [];
    const reaches = (from: string, to: string, seen = new Set<string>()): boolean => {
      for (const next of edges.get(from) ?? []) {
        if (next === to) return true;
        if (!seen.has(next) && (seen.add(next), reaches(next, to, seen))) return true;
      }
      return false;
    };
    for (const [a, targets] of edges)
      for (const b of targets) if (a < b && reaches(b, a)) cycles.push(`${a} <-> ${b}`);
    expect(cycles).toEqual([]);
  });
});
