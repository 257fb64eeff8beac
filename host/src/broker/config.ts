import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { repoRoot } from "../../../shared/state-dir";

/** Values that fill the placeholders of infra/mosquitto/*.template. */
export interface BrokerConfigParams {
  user: string;
  port: number;
  bind: string;
  caFile: string;
  certFile: string;
  keyFile: string;
  crlFile: string;
  aclFile: string;
  /** Mosquitto wants a trailing slash; render adds it. */
  persistenceDir: string;
  /** "stderr", "stdout" or "file <path>". */
  logDest: string;
  ingestIdentity: string;
  /**
   * use_username_as_clientid: the client id becomes the certificate CN, so one identity has one
   * session and no client can take over another's (see the template). Keep it true; false is unsafe.
   */
  bindClientIdToIdentity: boolean;
  /** Mosquitto's dynamic-security plugin and its JSON file, through which the launcher cuts off revoked identities. */
  dynsec?: { plugin: string; configFile: string };
}

export interface BrokerTemplates {
  conf: string;
  acl: string;
}

export interface RenderedBrokerConfig {
  conf: string;
  acl: string;
}

/** Same rule as isValidDeviceId: safe as an MQTT topic level and an ACL username token. */
const IDENTITY = /^[A-Za-z0-9._-]{1,32}$/;

export function templatesDir(): string {
  return join(repoRoot(), "infra", "mosquitto");
}

export async function loadTemplates(dir = templatesDir()): Promise<BrokerTemplates> {
  const [conf, acl] = await Promise.all([
    readFile(join(dir, "mosquitto.conf.template"), "utf8"),
    readFile(join(dir, "acl.template"), "utf8"),
  ]);
  return { conf, acl };
}

/**
 * Fills `{{NAME}}` placeholders. Every placeholder must have a value and every value must
 * stay on one line without spaces where mosquitto would split it: a path with a newline
 * could otherwise inject configuration directives.
 */
export function fillTemplate(template: string, values: Readonly<Record<string, string>>): string {
  const missing = new Set<string>();
  const out = template.replace(/\{\{([A-Z0-9_]+)\}\}/g, (_m, name: string) => {
    const v = values[name];
    if (v === undefined) {
      missing.add(name);
      return "";
    }
    return v;
  });
  if (missing.size > 0) throw new Error(`mosquitto template: no value for ${[...missing].join(", ")}`);
  return out;
}

function checkValue(name: string, value: string, allowSpace: boolean): string {
  if (value.length === 0) throw new Error(`mosquitto config: ${name} is empty`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value))
    throw new Error(`mosquitto config: ${name} contains a control character`);
  if (!allowSpace && /\s/.test(value))
    throw new Error(`mosquitto config: ${name} must not contain spaces: ${value}`);
  return value;
}

export function renderBrokerConfig(templates: BrokerTemplates, p: BrokerConfigParams): RenderedBrokerConfig {
  if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535)
    throw new Error(`mosquitto config: invalid port ${p.port}`);
  if (!IDENTITY.test(p.ingestIdentity))
    throw new Error(`mosquitto config: invalid ingest identity "${p.ingestIdentity}"`);
  const dir = checkValue("persistenceDir", p.persistenceDir, false);
  const conf = fillTemplate(templates.conf, {
    USER: checkValue("user", p.user, false),
    PORT: String(p.port),
    BIND: checkValue("bind", p.bind, false),
    CA_FILE: checkValue("caFile", p.caFile, false),
    CERT_FILE: checkValue("certFile", p.certFile, false),
    KEY_FILE: checkValue("keyFile", p.keyFile, false),
    CRL_FILE: checkValue("crlFile", p.crlFile, false),
    ACL_FILE: checkValue("aclFile", p.aclFile, false),
    PERSISTENCE_DIR: dir.endsWith("/") ? dir : `${dir}/`,
    LOG_DEST: checkValue("logDest", p.logDest, true),
    BIND_CLIENT_ID: p.bindClientIdToIdentity ? "true" : "false",
    REVOCATION_PLUGIN: p.dynsec
      ? `plugin ${checkValue("dynsec plugin", p.dynsec.plugin, false)}\nplugin_opt_config_file ${checkValue("dynsec file", p.dynsec.configFile, false)}`
      : "# (not loaded here: no launcher drives it, so a revocation takes a broker restart)",
  });
  const acl = fillTemplate(templates.acl, { INGEST_IDENTITY: p.ingestIdentity });
  return { conf, acl };
}

/**
 * Container paths for docker-compose (eclipse-mosquitto image layout). docker-compose mounts
 * the PKI's `public/` (CA bundle, CRL) and `broker/` (certificate, key) folders read-only,
 * never `ca-private/`.
 */
export const DOCKER_BROKER_PARAMS: BrokerConfigParams = {
  user: "mosquitto",
  port: 8883,
  // Inside the container; docker-compose decides which host interface publishes it.
  bind: "0.0.0.0",
  caFile: "/mosquitto/pki/public/ca-bundle.pem",
  certFile: "/mosquitto/pki/broker/cert.pem",
  keyFile: "/mosquitto/pki/broker/key.pem",
  crlFile: "/mosquitto/pki/public/crl.pem",
  aclFile: "/mosquitto/config/acl",
  persistenceDir: "/mosquitto/data/",
  logDest: "stdout",
  ingestIdentity: "ingest",
  // Without it any board could take over the ingest's session and its queued telemetry; see the template.
  bindClientIdToIdentity: true,
};

export function dockerConfigDir(): string {
  return join(templatesDir(), "docker");
}
