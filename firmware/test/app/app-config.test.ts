import { describe, expect, it } from "vitest";
import { DEFAULT_APP_CONFIG, parseAppConfig } from "../../src/app/app-config";

describe("parseAppConfig", () => {
  it("takes the manifest's typed values and mcconfig's key=value strings alike", () => {
    const typed = parseAppConfig({
      interval: 5000,
      encrypt: true,
      outboxCapacity: 50,
      brokerHost: "broker.lan",
      brokerPort: 8884,
    });
    const strings = parseAppConfig({
      interval: "5000",
      encrypt: "true",
      outboxCapacity: "50",
      brokerHost: "broker.lan",
      brokerPort: "8884",
    });
    expect(typed.problems).toEqual([]);
    expect(strings).toEqual(typed);
    expect(typed.config).toMatchObject({
      intervalMs: 5000,
      encryptRequired: true,
      outboxCapacity: 50,
      brokerHost: "broker.lan",
      brokerPort: 8884,
    });
  });

  it("treats empty values as unset and falls back to the defaults", () => {
    const { config, problems } = parseAppConfig({ interval: "", brokerHost: "", brokerPort: "" });
    expect(problems).toEqual([]);
    expect(config).toEqual(DEFAULT_APP_CONFIG);
  });

  it("reports bad values instead of throwing, and keeps the defaults for them", () => {
    const { config, problems } = parseAppConfig({
      interval: "fast",
      maxInflight: 500,
      encrypt: "maybe",
      reconnectMinMs: 5000,
      reconnectMaxMs: 1000,
      fw: "",
    });
    expect(problems).toEqual([
      "config interval must be an integer 100..86400000",
      "config fw must be 1..32 characters",
      "config reconnectMaxMs is below reconnectMinMs",
      "config encrypt must be true or false",
      "config maxInflight must be an integer 1..20",
    ]);
    expect(config.intervalMs).toBeNull();
    expect(config.maxInflight).toBe(DEFAULT_APP_CONFIG.maxInflight);
    expect(config.encryptRequired).toBe(false);
    expect(config.reconnectMaxMs).toBe(5000);
    expect(config.fw).toBe(DEFAULT_APP_CONFIG.fw);
  });
});
