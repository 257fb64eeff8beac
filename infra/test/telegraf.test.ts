// infra/telegraf/telegraf.conf writes what the ingest writes for a reading: same measurement,
// topic, tags, fields and field types, the device timestamp in ms, at-least-once from the broker.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "smol-toml";
import { CHANNEL_NAMES } from "../../firmware/src/telemetry/channels";
import { telemetryTopic } from "../../firmware/src/telemetry/topics";
import type { Reading } from "../../firmware/src/telemetry/reading";
import { readingLine, TELEMETRY_MEASUREMENT } from "../../host/src/ingest/line-protocol";
import { TELEMETRY_BUCKET } from "../grafana/src/config";
import { repoRoot } from "../../shared/state-dir";

interface JsonField {
  path: string;
  type: string;
  rename?: string;
  optional?: boolean;
}
interface TelegrafConf {
  agent: { precision: string };
  inputs: {
    mqtt_consumer: {
      servers: string[];
      topics: string[];
      qos: number;
      persistent_session: boolean;
      client_id: string;
      tls_ca: string;
      tls_cert: string;
      tls_key: string;
      data_format: string;
      tags: Record<string, string>;
      topic_parsing: { topic: string; tags: string }[];
      json_v2: {
        measurement_name: string;
        timestamp_path: string;
        timestamp_format: string;
        field: JsonField[];
      }[];
    }[];
  };
  outputs: { influxdb_v2: { bucket: string; token: string; namepass: string[] }[] };
}

const conf = parse(
  await readFile(join(repoRoot(), "infra/telegraf/telegraf.conf"), "utf8"),
) as unknown as TelegrafConf;
const mqttIn = conf.inputs.mqtt_consumer[0]!;
const json = mqttIn.json_v2[0]!;

/** What the ingest writes for one reading: measurement, tag keys, field name → "float" | "int". */
function ingestSchema(): {
  measurement: string;
  tags: string[];
  fields: Record<string, string>;
  timestamp: string;
} {
  const reading: Reading = {
    sensorId: "elx-1",
    seq: 7,
    ts: 1_764_000_000_123,
    boot: 2,
    fw: "1.0.0",
    values: {
      temperature_c: 60,
      pressure_bar: 30,
      h2_flow_sccm: 4000,
      purity_pct: 99.99,
      voltage_v: 70,
      current_a: 150,
    },
    faults: [],
  };
  const [head = "", fieldsText = "", timestamp = ""] = readingLine(reading, "site-a").split(" ");
  const [measurement = "", ...tagPairs] = head.split(",");
  const fields = Object.fromEntries(
    fieldsText.split(",").map((kv) => {
      const [k = "", v = ""] = kv.split("=");
      return [k, v.endsWith("i") ? "int" : "float"];
    }),
  );
  return { measurement, tags: tagPairs.map((t) => t.split("=")[0] ?? ""), fields, timestamp };
}

describe("telegraf.conf", () => {
  const ingest = ingestSchema();

  it("subscribes to the telemetry topics and takes sensor_id from the topic level the topic scheme uses", () => {
    const pattern = telemetryTopic("+");
    expect(mqttIn.topics).toEqual([pattern]);
    const parsing = mqttIn.topic_parsing[0]!;
    expect(parsing.topic).toBe(pattern);
    const levels = pattern.split("/");
    const tagLevels = parsing.tags.split("/");
    expect(tagLevels.length).toBe(levels.length);
    expect(levels[tagLevels.indexOf("sensor_id")]).toBe("+");
  });

  it("acknowledges only what it wrote: QoS 1, persistent session, fixed client id, its own certificate", () => {
    expect(mqttIn.qos).toBe(1);
    expect(mqttIn.persistent_session).toBe(true);
    expect(mqttIn.client_id).toMatch(/^telegraf-/);
    expect(mqttIn.servers[0]).toMatch(/^ssl:\/\/mosquitto:8883$/);
    expect(mqttIn.tls_cert).toMatch(/\/telegraf\/cert\.pem$/);
    expect(mqttIn.tls_key).toMatch(/\/telegraf\/key\.pem$/);
  });

  it("writes the ingest's measurement, tags, fields and field types", () => {
    expect(json.measurement_name).toBe(TELEMETRY_MEASUREMENT);
    expect(ingest.measurement).toBe(TELEMETRY_MEASUREMENT);
    const telegrafTags = [
      ...mqttIn.topic_parsing[0]!.tags.split("/").filter((t) => t !== "_"),
      ...Object.keys(mqttIn.tags),
    ].sort();
    expect(telegrafTags).toEqual([...ingest.tags].sort());
    const telegrafFields = Object.fromEntries(json.field.map((f) => [f.rename ?? f.path, f.type]));
    expect(telegrafFields).toEqual(ingest.fields);
    for (const name of CHANNEL_NAMES) {
      expect(json.field.find((f) => f.path === name)?.optional, `${name} may be null (faulted)`).toBe(true);
    }
  });

  it("uses the device timestamp in milliseconds, as the ingest does", () => {
    expect(json.timestamp_path).toBe("ts");
    expect(json.timestamp_format).toBe("unix_ms");
    expect(ingest.timestamp).toBe("1764000000123");
    expect(conf.agent.precision).toBe("1ms");
  });

  it("writes to the telemetry bucket with a token from the environment", () => {
    const out = conf.outputs.influxdb_v2[0]!;
    expect(out.bucket).toBe(TELEMETRY_BUCKET);
    expect(out.token).toBe("${INFLUX_TOKEN}");
    expect(out.namepass).toEqual([TELEMETRY_MEASUREMENT]);
  });
});
