import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["{firmware,host,pki,infra,manifests}/test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Service tests (mosquitto, victoria-metrics) each start their own processes;
    // two workers match the two cores of the CI machine.
    maxWorkers: 2,
    pool: "forks",
  },
});
