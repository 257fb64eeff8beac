#!/usr/bin/env node
// `npm run broker`: Debian's mosquitto with the project's mTLS configuration and ACL, in the
// foreground, without Docker. It keeps the CRL fresh and enforces revocations (crl-keeper.ts,
// revocation-sync.ts); `npm run broker -- restart` makes a running one reload the CRL by hand.
import { access, constants, mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { pkiPaths } from "../../../pki/src/paths";
import { DOCKER_BROKER_PARAMS, dockerConfigDir, loadTemplates, renderBrokerConfig } from "../broker/config";
import { startMosquitto, type BrokerPki } from "../broker/mosquitto";
import { isProcessAlive, readRunState, writeRunState } from "../broker/run-state";
import { CrlKeeper, localCrlResigner } from "../broker/crl-keeper";
import { prepareLauncherRevocation } from "../broker/revocation-setup";
import { stateDir } from "../../../shared/state-dir";

const defaultDataDir = (): string => join(stateDir(), "broker", "data");

interface StartArgs {
  port: number;
  bind: string;
  dataDir: string;
  ingestIdentity: string;
  bindClientId: boolean;
  logFile?: string;
  ca?: string;
  crl?: string;
  cert?: string;
  key?: string;
  quiet: boolean;
}

function brokerPki(a: StartArgs): BrokerPki {
  const p = pkiPaths(stateDir());
  return {
    caBundle: a.ca ?? p.caBundle,
    crl: a.crl ?? p.crl,
    broker: { cert: a.cert ?? p.broker.cert, key: a.key ?? p.broker.key },
  };
}

async function assertPkiPresent(pki: BrokerPki): Promise<void> {
  for (const [what, path] of [
    ["CA bundle", pki.caBundle],
    ["CRL", pki.crl],
    ["broker certificate", pki.broker.cert],
    ["broker key", pki.broker.key],
  ] as const) {
    try {
      await access(path, constants.R_OK);
    } catch {
      throw new Error(
        `${what} not found at ${path}: create the PKI first (npm run pki -- --help) or pass --ca/--crl/--cert/--key`,
      );
    }
  }
}

async function runForeground(a: StartArgs): Promise<void> {
  const pki = brokerPki(a);
  await assertPkiPresent(pki);
  const dataDir = resolve(a.dataDir);
  const existing = await readRunState(dataDir).catch(() => undefined);
  if (existing && isProcessAlive(existing.cliPid) && existing.cliPid !== process.pid) {
    throw new Error(`a broker already runs on this data folder (pid ${existing.cliPid}, ${existing.url})`);
  }
  // A broker started long after the last re-signing must not load a lapsed CRL (it would refuse every board).
  const resign = a.crl === undefined ? await localCrlResigner(stateDir()) : undefined;
  const loadedCrl = await CrlKeeper.prepare(pki.crl, resign);
  const say = (line: string): void => console.error(`broker: ${line}`);
  // Cutting off by identity needs the PKI's revocation list: not with an external --crl.
  const revocation =
    a.crl === undefined
      ? await prepareLauncherRevocation({ stateDir: stateDir(), dataDir, log: say })
      : undefined;
  console.error(`broker: starting mosquitto (data ${dataDir}) …`);
  const handle = await startMosquitto({
    pki,
    port: a.port,
    bind: a.bind,
    dataDir,
    ingestIdentity: a.ingestIdentity,
    bindClientIdToIdentity: a.bindClientId,
    logFile: a.logFile,
    dynsec: revocation?.prepared.dynsec,
    onLogLine: a.quiet ? undefined : (line) => process.stderr.write(`mosquitto: ${line}\n`),
  });
  let generation = 1;
  const record = (): Promise<void> =>
    writeRunState(dataDir, {
      cliPid: process.pid,
      brokerPid: handle.pid,
      url: handle.url,
      port: handle.port,
      generation,
      startedAt: new Date().toISOString(),
    });
  await record();
  // The one line scripts and tests look for.
  console.log(`broker: ready ${handle.url} pid ${handle.pid}`);

  let stopping = false;
  let restarting: Promise<void> | undefined;

  const stop = async (why: string, code: number): Promise<void> => {
    if (stopping) return;
    stopping = true;
    console.error(`broker: ${why}, stopping …`);
    await keeper.stop();
    await sync?.stop();
    await restarting?.catch(() => undefined);
    await handle.stop();
    console.error("broker: stopped");
    process.exit(code);
  };
  /** One restart at a time, from SIGHUP (`npm run broker -- restart`) or the CRL keeper. */
  const restartBroker = (why: string): Promise<void> => {
    if (stopping) return Promise.resolve();
    restarting ??= (async () => {
      console.error(`broker: restarting to load the current CRL (${why}) …`);
      await handle.restart();
      generation += 1;
      await record();
      console.log(`broker: restarted ${handle.url} pid ${handle.pid}`);
    })()
      .catch((err: unknown) => {
        console.error(`broker: restart failed: ${err instanceof Error ? err.message : String(err)}`);
        void stop("restart failed", 1);
      })
      .finally(() => {
        restarting = undefined;
      });
    return restarting;
  };
  const sync = await revocation?.attach(handle.url);
  const keeper = new CrlKeeper(loadedCrl, {
    crlPath: pki.crl,
    resignIfDue: resign,
    restart: restartBroker,
    onNewRevocations: sync ? (serials) => sync.onNewRevocations(serials) : undefined,
    log: say,
  });
  keeper.start();
  process.on("SIGINT", () => void stop("SIGINT", 0));
  process.on("SIGTERM", () => void stop("SIGTERM", 0));
  // SIGHUP = restart, so a new CRL is read (mosquitto reads it at start only).
  process.on("SIGHUP", () => void restartBroker("requested"));

  for (;;) {
    const code = await handle.exited();
    if (stopping) return;
    if (restarting) {
      await restarting;
      continue;
    }
    console.error(`broker: mosquitto exited unexpectedly (exit code ${code ?? "signal"})`);
    const tail = handle.logTail().slice(-5);
    if (tail.length) console.error(tail.join("\n"));
    await stop("broker died", 1);
  }
}

async function requestRestart(dataDirArg: string, timeoutMs: number): Promise<void> {
  const dataDir = resolve(dataDirArg);
  const state = await readRunState(dataDir);
  if (!state || !isProcessAlive(state.cliPid)) {
    throw new Error(
      `no running \`npm run broker\` for ${dataDir}; under docker-compose use \`docker compose restart mosquitto\``,
    );
  }
  process.kill(state.cliPid, "SIGHUP");
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    const now = await readRunState(dataDir).catch(() => undefined);
    if (now && now.generation > state.generation) {
      console.log(
        `broker: restarted ${now.url} pid ${now.brokerPid} (was ${state.brokerPid}); the current CRL is enforced`,
      );
      return;
    }
    if (!isProcessAlive(state.cliPid)) throw new Error("the broker stopped while restarting; see its output");
  }
  throw new Error(`the broker did not report a restart within ${timeoutMs} ms`);
}

async function renderDocker(outDir: string): Promise<void> {
  const rendered = renderBrokerConfig(await loadTemplates(), DOCKER_BROKER_PARAMS);
  await mkdir(outDir, { recursive: true });
  await writeFile(join(outDir, "mosquitto.conf"), rendered.conf);
  await writeFile(join(outDir, "acl"), rendered.acl);
  console.log(`broker: wrote ${join(outDir, "mosquitto.conf")} and ${join(outDir, "acl")}`);
}

await yargs(hideBin(process.argv))
  .scriptName("npm run broker --")
  .usage(
    "$0 [start] [options]\n\nRuns Debian's mosquitto in the foreground with the project's mutual-TLS configuration and ACL, " +
      "using the PKI under the state folder. Stops cleanly on Ctrl-C / SIGTERM.\n\n" +
      "Revoking a board: `npm run pki -- revoke <id>`; the running broker cuts it off by itself within seconds and re-signs " +
      "the CRL before it lapses. `npm run broker -- restart` reloads the CRL by hand (mosquitto reads it at start only).",
  )
  .command(
    ["start", "$0"],
    "start the broker in the foreground",
    (y) =>
      y
        .option("port", { type: "number", default: 8883, describe: "TLS listener port (0 = a free port)" })
        .option("bind", {
          type: "string",
          default: "127.0.0.1",
          describe: "address to listen on (0.0.0.0 to serve boards on the LAN)",
        })
        .option("data-dir", {
          type: "string",
          default: defaultDataDir(),
          describe: "rendered config, ACL and persistence database",
        })
        .option("ingest-identity", {
          type: "string",
          default: "ingest",
          describe: "certificate CN of the ingest service",
        })
        .option("bind-client-id", {
          type: "boolean",
          default: true,
          describe:
            "client id := certificate CN, so no client can take over another's session (one connection per identity). " +
            "--no-bind-client-id is UNSAFE: any board could then take over the ingest's session and lose its queued telemetry",
        })
        .option("log-file", { type: "string", describe: "also append the broker log to this file" })
        .option("ca", { type: "string", describe: "CA bundle (default: the PKI's public/ca-bundle.pem)" })
        .option("crl", { type: "string", describe: "CRL (default: the PKI's public/crl.pem)" })
        .option("cert", {
          type: "string",
          describe: "broker certificate (default: the PKI's broker/cert.pem)",
        })
        .option("key", { type: "string", describe: "broker private key (default: the PKI's broker/key.pem)" })
        .option("quiet", { type: "boolean", default: false, describe: "do not echo the broker log" }),
    (a) => runForeground(a as unknown as StartArgs),
  )
  .command(
    "restart",
    "restart a running `npm run broker` (same port and data) so it enforces the current CRL",
    (y) =>
      y
        .option("data-dir", {
          type: "string",
          default: defaultDataDir(),
          describe: "data folder of the running broker",
        })
        .option("timeout", {
          type: "number",
          default: 30_000,
          describe: "milliseconds to wait for the restart",
        }),
    (a) => requestRestart(a.dataDir, a.timeout),
  )
  .command(
    "render-docker",
    "render infra/mosquitto/*.template with container paths for docker-compose",
    (y) => y.option("out", { type: "string", default: dockerConfigDir(), describe: "output folder" }),
    (a) => renderDocker(a.out),
  )
  .strict()
  .help()
  .fail((msg, err) => {
    console.error(`broker: ${err?.message ?? msg}`);
    process.exit(1);
  })
  .parseAsync();
