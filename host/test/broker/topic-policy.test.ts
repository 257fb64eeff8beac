import { describe, expect, it } from "vitest";
import { fillTemplate, loadTemplates } from "../../src/broker/config";
import { isAllowed } from "../../src/broker/topic-policy";

/**
 * A reading of the ACL file with Mosquitto 2.0's rules (src/security_default.c): `user` starts a user's
 * section, `topic` lines apply to that user, `pattern` lines to everyone with %u/%c substituted (denied to a
 * username containing + or #), and a topic is granted when an ACL entry's filter matches it
 * (mosquitto_topic_matches_sub). Used to check the pure policy against the file the real broker loads.
 */
interface AclRule {
  access: "read" | "write" | "readwrite" | "deny";
  filter: string;
}

function parseAcl(text: string): { users: Map<string, AclRule[]>; patterns: AclRule[] } {
  const users = new Map<string, AclRule[]>();
  const patterns: AclRule[] = [];
  let current: AclRule[] | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const words = line.split(/\s+/);
    const kw = words[0];
    if (kw === "user") {
      current = [];
      users.set(words.slice(1).join(" "), current);
      continue;
    }
    const access = (words.length === 3 ? words[1] : "readwrite") as AclRule["access"];
    const filter = words[words.length - 1]!;
    if (kw === "topic") {
      if (!current) throw new Error("topic line before any user line: anonymous rules are not expected");
      current.push({ access, filter });
    } else if (kw === "pattern") patterns.push({ access, filter });
    else throw new Error(`unexpected ACL line: ${line}`);
  }
  return { users, patterns };
}

function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split("/");
  const t = topic.split("/");
  for (let i = 0; i < f.length; i++) {
    if (f[i] === "#") return true;
    if (i >= t.length) return false;
    if (f[i] !== "+" && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

function mosquittoAllows(
  acl: ReturnType<typeof parseAcl>,
  username: string,
  access: "read" | "write",
  topic: string,
): boolean {
  const grants = (r: AclRule): boolean => r.access === access || r.access === "readwrite";
  // `deny` lines of the user's section come before any grant, the user's lines before the patterns.
  for (const r of acl.users.get(username) ?? [])
    if (r.access === "deny" && topicMatches(r.filter, topic)) return false;
  for (const r of acl.users.get(username) ?? []) if (grants(r) && topicMatches(r.filter, topic)) return true;
  if (username.includes("+") || username.includes("#")) return false;
  for (const r of acl.patterns) {
    if (grants(r) && topicMatches(r.filter.replaceAll("%u", username), topic)) return true;
  }
  return false;
}

const IDENTITIES = [
  "b1",
  "emu-00042",
  "ingest",
  "monitor",
  "telegraf",
  "bridge",
  "other.board_7",
  "a+b",
  "x#",
  "a/b",
  "",
];
const KINDS = [
  "telemetry",
  "status",
  "csr",
  "command",
  "config",
  "",
  "down/stored",
  "down/trust",
  "down/config",
  "down/other",
  "down",
];
function concreteTopics(): string[] {
  const out = new Set<string>([
    "#",
    "electrolyser",
    "electrolyser/b1",
    "$SYS/broker/uptime",
    "electrolyser/b1/telemetry/x",
    "x/b1/telemetry",
  ]);
  for (const who of [
    "b1",
    "emu-00042",
    "ingest",
    "monitor",
    "telegraf",
    "bridge",
    "other.board_7",
    "someone",
  ])
    for (const k of KINDS) out.add(`electrolyser/${who}/${k}`);
  return [...out];
}

describe("topic policy agrees with infra/mosquitto/acl.template", async () => {
  const { acl: template } = await loadTemplates();
  const acl = parseAcl(fillTemplate(template, { INGEST_IDENTITY: "ingest" }));

  it("grants a publish exactly when the ACL grants write", () => {
    let granted = 0;
    for (const id of IDENTITIES)
      for (const topic of concreteTopics()) {
        const policy = isAllowed(id, "publish", topic);
        expect({ id, topic, policy }).toEqual({
          id,
          topic,
          policy: mosquittoAllows(acl, id, "write", topic),
        });
        if (policy) granted++;
      }
    expect(granted).toBeGreaterThan(4); // the comparison must not be vacuous
  });

  it("grants a concrete subscription exactly when the ACL grants read", () => {
    let granted = 0;
    for (const id of IDENTITIES)
      for (const topic of concreteTopics()) {
        if (topic.includes("#")) continue;
        const policy = isAllowed(id, "subscribe", topic);
        expect({ id, topic, policy }).toEqual({ id, topic, policy: mosquittoAllows(acl, id, "read", topic) });
        if (policy) granted++;
      }
    expect(granted).toBeGreaterThan(10);
  });

  it("grants a wildcard or shared subscription only when every topic it can match is readable", () => {
    const filters = [
      "#",
      "electrolyser/#",
      "electrolyser/+/telemetry",
      "electrolyser/+/status",
      "electrolyser/+/command",
      "electrolyser/b1/+",
      "electrolyser/b1/down/#",
      "electrolyser/b1/down/+",
      "electrolyser/+/down/stored",
      "$share/g/electrolyser/b1/down/#",
      "+/b1/telemetry",
      "$share/g/electrolyser/+/telemetry",
      "$share/g/electrolyser/+/status",
      "$share/g/electrolyser/b1/command",
      "$share/g/electrolyser/#",
      "$share//electrolyser/+/telemetry",
      "$share/g+/electrolyser/+/telemetry",
    ];
    for (const id of IDENTITIES)
      for (const f of filters) {
        if (!isAllowed(id, "subscribe", f)) continue;
        const bare = f.startsWith("$share/") ? f.split("/").slice(2).join("/") : f;
        for (const topic of concreteTopics()) {
          if (topic.includes("#") || !topicMatches(bare, topic)) continue;
          // A service's own tree is denied to it (no board can publish there: a service name is never a device id).
          if (topic.split("/")[1] === id) continue;
          expect({ id, f, topic, readable: mosquittoAllows(acl, id, "read", topic) }).toEqual({
            id,
            f,
            topic,
            readable: true,
          });
        }
      }
  });
});

describe("topic policy", () => {
  it("lets a board write its own telemetry and status and read its own downlink tree only", () => {
    expect(isAllowed("b1", "publish", "electrolyser/b1/telemetry")).toBe(true);
    expect(isAllowed("b1", "publish", "electrolyser/b1/status")).toBe(true);
    expect(isAllowed("b1", "publish", "electrolyser/b2/telemetry")).toBe(false);
    expect(isAllowed("b1", "publish", "electrolyser/b1/down/stored")).toBe(false);
    expect(isAllowed("b1", "publish", "electrolyser/b2/down/stored")).toBe(false);
    expect(isAllowed("b1", "subscribe", "electrolyser/b1/down/#")).toBe(true);
    expect(isAllowed("b1", "subscribe", "electrolyser/b1/down/stored")).toBe(true);
    expect(isAllowed("b1", "subscribe", "electrolyser/b2/down/#")).toBe(false);
    expect(isAllowed("b1", "subscribe", "electrolyser/+/down/stored")).toBe(false);
    expect(isAllowed("b1", "subscribe", "electrolyser/b1/command")).toBe(false);
    expect(isAllowed("b1", "subscribe", "electrolyser/+/telemetry")).toBe(false);
    expect(isAllowed("b1", "subscribe", "#")).toBe(false);
  });

  it("lets the ingest identity read all telemetry and status, shared or not, and nothing else", () => {
    expect(isAllowed("ingest", "subscribe", "electrolyser/+/telemetry")).toBe(true);
    expect(isAllowed("ingest", "subscribe", "electrolyser/+/status")).toBe(true);
    expect(isAllowed("ingest", "subscribe", "$share/ingest/electrolyser/+/telemetry")).toBe(true);
    expect(isAllowed("ingest", "subscribe", "electrolyser/+/command")).toBe(false);
    expect(isAllowed("ingest", "subscribe", "electrolyser/#")).toBe(false);
    expect(isAllowed("ingest", "publish", "electrolyser/b1/telemetry")).toBe(false);
    // The one thing it writes: each board's end-to-end confirmations, never trust or config.
    expect(isAllowed("ingest", "publish", "electrolyser/b1/down/stored")).toBe(true);
    expect(isAllowed("ingest", "publish", "electrolyser/b1/down/trust")).toBe(false);
    expect(isAllowed("ingest", "publish", "electrolyser/ingest/down/stored")).toBe(false);
    expect(isAllowed("ingest", "subscribe", "electrolyser/b1/down/stored")).toBe(false);
    expect(isAllowed("monitor", "publish", "electrolyser/b1/down/stored")).toBe(false);
    expect(isAllowed("svc", "subscribe", "electrolyser/+/telemetry", "svc")).toBe(true);
    expect(isAllowed("ingest", "subscribe", "electrolyser/+/telemetry", "svc")).toBe(false);
  });

  it("lets the monitor identity read all telemetry and status and publish to no board's topics", () => {
    expect(isAllowed("monitor", "subscribe", "electrolyser/+/telemetry")).toBe(true);
    expect(isAllowed("monitor", "subscribe", "electrolyser/+/status")).toBe(true);
    expect(isAllowed("monitor", "subscribe", "electrolyser/b1/telemetry")).toBe(true);
    expect(isAllowed("monitor", "subscribe", "electrolyser/+/command")).toBe(false);
    expect(isAllowed("monitor", "subscribe", "#")).toBe(false);
    for (const kind of ["telemetry", "status", "command"])
      expect(isAllowed("monitor", "publish", `electrolyser/b1/${kind}`)).toBe(false);
    // Whatever the ingest identity is called, monitor keeps its rights.
    expect(isAllowed("monitor", "subscribe", "electrolyser/+/telemetry", "svc")).toBe(true);
  });

  it("denies identities that could act as wildcards", () => {
    for (const id of ["+", "#", "a/b", "", "+x"]) {
      expect(isAllowed(id, "publish", `electrolyser/${id}/telemetry`)).toBe(false);
      expect(isAllowed(id, "subscribe", `electrolyser/${id}/down/#`)).toBe(false);
    }
  });
});
