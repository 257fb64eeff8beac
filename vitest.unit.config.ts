import { defineConfig } from "vitest/config";
import base from "./vitest.config";

/**
 * `npm run test:unit`: the tests that start no external service (Mosquitto, VictoriaMetrics, nats-server,
 * faketime, socat, chromium) and no fleet, CLI child process or bulk key generation, so the whole set runs in
 * seconds. `npm test` still runs everything, these included.
 *
 * An explicit list, so a new test joins only when someone decides it is quick; the other direction is checked:
 * host/test/architecture/unit-tests.test.ts fails if a file listed here reaches a service launcher through its
 * imports, or no longer exists.
 */
export const UNIT_TESTS: readonly string[] = [
  "firmware/test/app/app-config.test.ts",
  "firmware/test/app/backoff.test.ts",
  "firmware/test/app/sampler.test.ts",
  "firmware/test/app/broker-rotation.test.ts",
  "firmware/test/app/confirmations.test.ts",
  "firmware/test/app/flash-outbox.test.ts",
  "firmware/test/app/device-random.test.ts",
  "firmware/test/app/instrument-panel.test.ts",
  "firmware/test/app/platform-adapters.test.ts",
  "firmware/test/app/session-trust-buffers.test.ts",
  "firmware/test/app/telemetry-app.test.ts",
  "firmware/test/drivers/ads1115.test.ts",
  "firmware/test/drivers/callendar-van-dusen.test.ts",
  "firmware/test/drivers/current-loop.test.ts",
  "firmware/test/drivers/ina228.test.ts",
  "firmware/test/drivers/mass-flow-meter.test.ts",
  "firmware/test/drivers/max31865.test.ts",
  "firmware/test/drivers/modbus-rtu.test.ts",
  "firmware/test/envelope/envelope.test.ts",
  "firmware/test/identity/nvs-layout.test.ts",
  "firmware/test/identity/trust-rotation.test.ts",
  "firmware/test/native/key-request-options.test.ts",
  "firmware/test/outbox/flash-ring-mutants.test.ts",
  "firmware/test/outbox/flash-ring.test.ts",
  "firmware/test/outbox/outbox-journal.test.ts",
  "firmware/test/outbox/outbox.test.ts",
  "firmware/test/payload/codec.test.ts",
  "firmware/test/payload/replay-window.test.ts",
  "firmware/test/payload/telemetry-message.test.ts",
  "firmware/test/plant/driver-round-trip.test.ts",
  "firmware/test/platform/moddable-flash-area.test.ts",
  "firmware/test/platform/preload-safety.test.ts",
  "firmware/test/telemetry/channels.test.ts",
  "firmware/test/telemetry/confirmation.test.ts",
  "firmware/test/util/utf8.test.ts",
  "host/test/architecture/dependencies.test.ts",
  "host/test/architecture/unit-tests.test.ts",
  "host/test/bench/cluster-table.test.ts",
  "host/test/broker/config.test.ts",
  "host/test/broker/connection-log.test.ts",
  "host/test/broker/topic-policy.test.ts",
  "host/test/crypto/device-keys.test.ts",
  "host/test/crypto/payload-grants.test.ts",
  "host/test/emulator/fd-limit.test.ts",
  "host/test/emulator/frames.test.ts",
  "host/test/emulator/live-snapshot.test.ts",
  "host/test/emulator/physics.test.ts",
  "host/test/emulator/scenario.test.ts",
  "host/test/emulator/stats.test.ts",
  "host/test/esp32-rom-double/esp32-rom-double.test.ts",
  "host/test/ingest/classify.test.ts",
  "host/test/ingest/confirmer.test.ts",
  "host/test/ingest/dead-letter.test.ts",
  "host/test/ingest/rate-limit.test.ts",
  "host/test/ingest/sites.test.ts",
  "host/test/ingest/supervisor.test.ts",
  "host/test/nvs/nvs-image.test.ts",
  "host/test/store/durable-horizon.test.ts",
  "host/test/store/retention.test.ts",
  "infra/test/grafana-provisioning.test.ts",
  "infra/test/telegraf.test.ts",
  "manifests/test/manifest.test.ts",
  "pki/test/gitignore.test.ts",
];

// Not mergeConfig: it would append this include list to the base one instead of replacing it.
export default defineConfig({ ...base, test: { ...base.test, include: [...UNIT_TESTS] } });
