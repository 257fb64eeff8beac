// infra/ingest/Dockerfile, read with a Dockerfile parser (dockerfile-ast, the one behind VS Code's Docker
// language server), and the bundle it builds, built here with the same esbuild command. What stays
// unverified without a Docker engine: that the base image tag exists, that the image builds and starts,
// that the named volumes take the image's ownership (see README, Deployable stack).
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { Copy, DockerfileParser, type Instruction } from "dockerfile-ast";
import { afterAll, describe, expect, it } from "vitest";
import { repoRoot } from "../../shared/state-dir";

const root = repoRoot();
const dockerfile = DockerfileParser.parse(await readFile(join(root, "infra/ingest/Dockerfile"), "utf8"));
const pkg = JSON.parse(await readFile(join(root, "package.json"), "utf8")) as {
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};

/** The instructions of each stage, in order; a stage starts at its FROM. */
function stages(): { name: string | null; image: string; body: Instruction[] }[] {
  const out: { name: string | null; image: string; body: Instruction[] }[] = [];
  for (const i of dockerfile.getInstructions()) {
    if (i.getKeyword() === "FROM") {
      const from = dockerfile.getFROMs()[out.length]!;
      out.push({
        name: from.getBuildStage(),
        image: `${from.getImageName()}:${from.getImageTag()}`,
        body: [],
      });
    } else out.at(-1)?.body.push(i);
  }
  return out;
}
const args = (i: Instruction) => i.getArgumentsContent() ?? "";
const fromFlag = (i: Instruction) => (i instanceof Copy ? i.getFromFlag()?.getValue() : undefined);

const tmps: string[] = [];
afterAll(async () => {
  for (const t of tmps) await rm(t, { recursive: true, force: true });
});

describe("the ingest image", () => {
  it("is multi-stage on a pinned Node 20 image, with no parse problems", () => {
    const all = stages();
    expect(all.length).toBeGreaterThanOrEqual(2);
    for (const s of all) expect(s.image).toMatch(/^node:20\.\d+\.\d+-bookworm-slim$/);
    expect(dockerfile.getInstructions().every((i) => i.getKeyword() === i.getKeyword().toUpperCase())).toBe(
      true,
    );
  });

  it("runs as a non-root user, the bundle with plain node (no tsx, no sources)", () => {
    const final = stages().at(-1)!;
    const users = final.body.filter((i) => i.getKeyword() === "USER").map(args);
    expect(users.at(-1)).toBeDefined();
    expect(users.at(-1)).not.toMatch(/^(root|0)(:|$)/);
    const entry = final.body.find((i) => i.getKeyword() === "ENTRYPOINT");
    expect(JSON.parse(args(entry!))).toEqual(["node", "dist/ingest.mjs"]);
    expect(final.body.map(args).join("\n")).not.toMatch(/tsx/);
    // The final stage copies only the bundle, the production modules and package.json.
    const copies = final.body.filter((i) => i.getKeyword() === "COPY");
    expect(copies.map((c) => [fromFlag(c) ?? "context", args(c)])).toEqual([
      ["deps", "/app/node_modules ./node_modules"],
      ["build", "/src/dist/ingest.mjs ./dist/ingest.mjs"],
      ["build", "/src/dist/nats-cluster.mjs ./dist/nats-cluster.mjs"],
      ["context", "package.json ./"],
    ]);
  });

  it("takes its node_modules from a stage that installs production dependencies only", () => {
    const deps = stages().find((s) => s.name === "deps")!;
    const install = deps.body.filter((i) => i.getKeyword() === "RUN").map(args);
    expect(install.some((r) => /npm ci\b.*--omit=dev/.test(r))).toBe(true);
    const build = stages().find((s) => s.name === "build")!;
    const runs = build.body.filter((i) => i.getKeyword() === "RUN").map(args);
    expect(runs).toContain("npm run build:ingest");
    expect(runs).toContain("npm run build:nats-cluster");
  });

  it("copies into the build only paths that exist, and the build context leaves out state, secrets and .env", async () => {
    for (const s of stages())
      for (const c of s.body.filter((i) => i.getKeyword() === "COPY" && !fromFlag(i))) {
        const sources = args(c).split(/\s+/).slice(0, -1);
        for (const src of sources) expect(existsSync(join(root, src)), src).toBe(true);
      }
    const ignore = (await readFile(join(root, ".dockerignore"), "utf8")).split("\n").map((l) => l.trim());
    for (const p of [".state/", ".env", ".git/", "node_modules/", "*.key", "*.pem"])
      expect(ignore).toContain(p);
  });

  it.each([
    ["ingest", ["--settings", "--rate-allowance"]],
    // docker-compose's nats-prepare runs `node dist/nats-cluster.mjs prepare-jetstream` from this image.
    ["nats-cluster", ["prepare-jetstream", "render-docker"]],
  ] as const)(
    "the %s bundle needs only production dependencies and runs without tsx",
    { timeout: 120_000 },
    async (name, helpWords) => {
      // Inside node_modules/.cache, so the bundle resolves its packages as /app/dist/NAME.mjs does in the image.
      await mkdir(join(root, "node_modules/.cache"), { recursive: true });
      const dir = await mkdtemp(join(root, `node_modules/.cache/est-${name}-image-`));
      tmps.push(dir);
      const script = pkg.scripts[`build:${name}`]!;
      expect(script).toMatch(
        new RegExp(`^esbuild host/src/cli/${name}\\.ts .*--outfile=dist/${name}\\.mjs$`),
      );
      const cmd = script.replace(
        `--outfile=dist/${name}.mjs`,
        `--outfile=${dir}/${name}.mjs --metafile=${dir}/meta.json`,
      );
      const [bin, ...rest] = cmd.split(" ");
      await promisify(execFile)(join(root, "node_modules/.bin", bin!), rest, { cwd: root });
      const meta = JSON.parse(await readFile(join(dir, "meta.json"), "utf8")) as {
        inputs: Record<string, { imports: { path: string; external?: boolean }[] }>;
      };
      const packages = new Set<string>();
      for (const input of Object.values(meta.inputs))
        for (const imp of input.imports)
          if (imp.external && !imp.path.startsWith("node:"))
            packages.add(
              imp.path.startsWith("@") ? imp.path.split("/").slice(0, 2).join("/") : imp.path.split("/")[0]!,
            );
      expect(packages.size).toBeGreaterThan(2);
      for (const p of packages) {
        expect(Object.keys(pkg.dependencies), `${p} must be a production dependency`).toContain(p);
      }
      const { stdout } = await promisify(execFile)(process.execPath, [join(dir, `${name}.mjs`), "--help"], {
        cwd: dir,
        env: { ...process.env, EST_STATE_DIR: join(dir, "state") },
      });
      for (const w of helpWords) expect(stdout).toContain(w);
    },
  );
});
