/**
 * Provisions one board: connect, read its MAC, flash size and partition table, look at the identity it
 * carries now, pick and check the identity it gets, write the NVS image (compressed, MD5-checked, read
 * back with `verify`), reset it into the firmware, and only then record the binding (bindings file and,
 * with one, the fleet manifest). Any failure before the end leaves both files as they were.
 */
import {
  issueDevice,
  listDeviceIds,
  PkiError,
  pkiPaths,
  revokeSerial,
  rotateDevice,
} from "../../../pki/src/index";
import {
  checkBinding,
  checkBoards,
  readBindings,
  recordBinding,
  type BindingLike,
  type BoardBinding,
} from "./bindings";
import { commitGrant, reserveGeneration, retireGrants, updateGrants } from "../crypto/payload-grants";
import { ProvisionError } from "./errors";
import { EspFlasher } from "./flasher";
import { loadIdentity, type IdentitySettings, type KeyGeneration } from "./identity";
import {
  bindInManifest,
  manifestBoards,
  manifestDevice,
  readManifestFile,
  type FleetManifestFile,
} from "./manifest-binding";
import { existingIdentity, identityImage, initialBootCounter } from "./nvs-image";
import {
  findNvsPartition,
  MODDABLE_NVS,
  parsePartitionTable,
  PARTITION_TABLE_OFFSET,
  PARTITION_TABLE_SIZE,
} from "./partition-table";

export interface ProvisionRequest {
  stateDir: string;
  path: string;
  usbVendorId?: number;
  usbProductId?: number;
  baud: number;
  /**
   * Absent: the board's bound identity if it has one, else the next device not yet on a board: of the
   * manifest in its order when there is one, else of the PKI. With a manifest it must be one of its devices.
   */
  deviceId?: string;
  /**
   * Fleet manifest: the devices to hand out (their PKI identity issued when missing), each one's site, and
   * where the binding is recorded too. Absent: the PKI's devices, `settings.site`, the bindings file only.
   */
  manifestPath?: string;
  settings: IdentitySettings;
  force: boolean;
  dryRun: boolean;
  verify: boolean;
  /** Overrides the partition table. */
  nvs?: { offset: number; size: number };
  connectAttempts?: number;
  progress: (line: string) => void;
  debug?: (line: string) => void;
  now?: () => Date;
  /** How long the board's previous payload key still opens after re-provisioning the same board. */
  keyGraceMs?: number;
}

export interface ProvisionResult {
  deviceId: string;
  mac: string;
  chip: string;
  flashSize: number;
  nvsOffset: number;
  nvsSize: number;
  usedBytes: number;
  boot: number;
  certSerial: string;
  written: boolean;
  verified: boolean;
  timings: { connectMs: number; writeMs: number; totalMs: number };
}

/** Identities picked by boards being provisioned right now in this process, so two boards never get one. */
const reserved = new Set<string>();

export async function provisionBoard(r: ProvisionRequest): Promise<ProvisionResult> {
  const now = r.now ?? (() => new Date());
  const t0 = performance.now();
  // Before touching the board: a broken manifest or a --device it does not list is the user's to fix first.
  const fleet = r.manifestPath !== undefined ? (await readManifestFile(r.manifestPath)).file : undefined;
  if (fleet && r.deviceId !== undefined) manifestDevice(fleet, r.deviceId);
  const flasher = await EspFlasher.connect({
    path: r.path,
    baud: r.baud,
    progress: r.progress,
    ...(r.usbVendorId !== undefined ? { usbVendorId: r.usbVendorId } : {}),
    ...(r.usbProductId !== undefined ? { usbProductId: r.usbProductId } : {}),
    ...(r.connectAttempts !== undefined ? { attempts: r.connectAttempts } : {}),
    ...(r.debug ? { debug: r.debug } : {}),
  });
  let reservedId: string | undefined;
  try {
    const connectMs = performance.now() - t0;
    const { mac, chip, flashSize } = flasher.info;
    r.progress(`flash ${flashSize / 1024 / 1024} MB`);

    const nvs = r.nvs ?? (await readNvsLocation(flasher, r.progress));
    if (nvs.offset % 4096 !== 0 || nvs.size % 4096 !== 0 || nvs.offset + nvs.size > flashSize) {
      throw new ProvisionError(
        "bad_input",
        `NVS partition 0x${nvs.offset.toString(16)}+0x${nvs.size.toString(16)} does not fit the ${flashSize}-byte flash in whole sectors`,
      );
    }
    r.progress(`reading the current NVS at 0x${nvs.offset.toString(16)} (0x${nvs.size.toString(16)} bytes)`);
    const current = existingIdentity(await flasher.readFlash(nvs.offset, nvs.size));

    const bindings = await readBindings(r.stateDir);
    const inManifest = fleet ? manifestBoards(fleet.manifest) : [];
    const deviceId =
      r.deviceId ??
      (fleet
        ? pickManifestDevice(fleet, mac, bindings.boards, inManifest)
        : await pickDeviceId(r.stateDir, mac, bindings.boards));
    if (r.deviceId !== undefined) {
      if (reserved.has(deviceId))
        throw new ProvisionError(
          "identity_elsewhere",
          `identity "${deviceId}" is being provisioned on another board right now`,
        );
      reserved.add(deviceId);
    }
    reservedId = deviceId;
    const check = checkBinding(bindings, deviceId, mac, r.force);
    if (!check.ok) throw check.error;
    const released: BindingLike[] = [...check.release];
    if (fleet) {
      const inFleet = checkBoards(inManifest, deviceId, mac, r.force, fleet.path);
      if (!inFleet.ok) throw inFleet.error;
      released.push(...inFleet.release);
    }
    // The identity moves here from another board (--force), which keeps a copy of its key: this board gets a
    // new key and certificate, and the old board's certificate is revoked once this one is bound.
    const movedFrom = released.filter((b) => b.deviceId === deviceId && b.mac !== mac);
    const oldSerials = [
      ...new Set(
        movedFrom.flatMap((b) =>
          "certSerial" in b && typeof b.certSerial === "string" ? [b.certSerial] : [],
        ),
      ),
    ];
    const boundHere = bindings.boards.some((b) => b.mac === mac) || inManifest.some((b) => b.mac === mac);
    if (current.deviceId !== undefined && current.deviceId !== deviceId && !boundHere && !r.force) {
      throw new ProvisionError(
        "already_bound",
        `board ${mac} already carries identity "${current.deviceId}" in its NVS (not in this fleet's bindings); use --force to replace it with "${deviceId}"`,
      );
    }

    let settings = r.settings;
    if (fleet) {
      const spec = manifestDevice(fleet, deviceId);
      // The manifest's site and interval win: the ingest holds the board to that interval (rate_exceeded).
      settings = { ...r.settings, site: spec.site, intervalMs: spec.intervalMs };
      if (!(await listDeviceIds(pkiPaths(r.stateDir))).includes(deviceId)) {
        if (r.dryRun) {
          r.progress(
            `dry run: nothing written or issued; ${deviceId} has no identity yet (a real run issues a ${spec.keyType} one) and would be bound to ${mac}`,
          );
          return {
            deviceId,
            mac,
            chip,
            flashSize,
            nvsOffset: nvs.offset,
            nvsSize: nvs.size,
            usedBytes: 0,
            boot: initialBootCounter(current.boot, now()),
            certSerial: "(not issued)",
            written: false,
            verified: false,
            timings: { connectMs, writeMs: 0, totalMs: performance.now() - t0 },
          };
        }
        r.progress(`issuing the identity of ${deviceId} (${spec.keyType}) from the fleet PKI`);
        try {
          await issueDevice({ stateDir: r.stateDir, id: deviceId, keyType: spec.keyType });
        } catch (err) {
          if (err instanceof PkiError)
            throw new ProvisionError("identity", `cannot issue identity "${deviceId}": ${err.message}`);
          throw err;
        }
      }
    }
    if (movedFrom.length > 0) {
      if (r.dryRun)
        r.progress(
          `dry run: ${deviceId} would get a new key and certificate, and its old board's certificate would be revoked`,
        );
      else {
        r.progress(
          `${deviceId} moves from ${movedFrom.map((b) => b.mac).join(", ")}: new key and certificate for this board`,
        );
        await rotateDevice({ stateDir: r.stateDir, id: deviceId }).catch((err: unknown) => {
          if (err instanceof PkiError)
            throw new ProvisionError("identity", `cannot renew identity "${deviceId}": ${err.message}`);
          throw err;
        });
      }
    }
    // A new payload key generation for every provisioning (none for a dry run): reserved before the board is
    // written, so even a failed attempt never hands its key to the next one.
    // The key id of a board provisioned before generations existed (= its secret id), recorded at commit.
    const legacyKeyId = [...bindings.released, ...bindings.boards]
      .filter((b) => b.deviceId === deviceId && b.keyGeneration === undefined)
      .map((b) => b.keyId)
      .pop();
    let generation: KeyGeneration | undefined;
    if (settings.keyId !== null && !r.dryRun) {
      generation = await updateGrants(r.stateDir, (f) => {
        const g = reserveGeneration(f, deviceId, typeof legacyKeyId === "number" ? [legacyKeyId] : []);
        return { file: g.file, result: { generation: g.generation, keyId: g.keyId } };
      });
    }
    const { identity, cert } = await loadIdentity(r.stateDir, deviceId, settings, generation);
    // Still carried forward (and above minutes since the epoch) although the key is new: harmless, and what
    // keeps a board that falls back to an older key (none does today) from reusing its own nonces.
    const boot = initialBootCounter(current.boot, now());
    const built = identityImage(identity, boot, nvs.size);
    r.progress(
      `NVS image for ${deviceId}: ${built.usedBytes} bytes of entries in a ${nvs.size}-byte partition (certificate ${cert.serial})`,
    );

    if (r.dryRun) {
      r.progress(`dry run: nothing written; ${deviceId} would be bound to ${mac}`);
      return result(false, false, 0);
    }

    const tw = performance.now();
    let lastPct = -1;
    await flasher.write(nvs.offset, built.image, (written, total) => {
      const pct = total === 0 ? 100 : Math.floor((100 * written) / total);
      if (pct !== lastPct && (pct === 100 || pct - lastPct >= 25))
        r.progress(`writing NVS ${pct}% (${total} bytes compressed)`);
      lastPct = pct;
    });
    r.progress("flash MD5 matches the image");
    let verified = false;
    if (r.verify) {
      const back = await flasher.readFlash(nvs.offset, nvs.size);
      const firstDiff = back.findIndex((b, i) => b !== built.image[i]);
      if (firstDiff >= 0 || back.length !== built.image.length) {
        throw new ProvisionError(
          "verify_mismatch",
          `${r.path}: read-back differs from the image at offset 0x${(nvs.offset + Math.max(firstDiff, 0)).toString(16)}`,
        );
      }
      verified = true;
      r.progress("read back and compared: identical");
    }
    const writeMs = performance.now() - tw;
    // Granted before the board boots, so the ingest knows the new key id by the board's first reading.
    const secretId = settings.keyId;
    const movedFromAnotherBoard = movedFrom.length > 0;
    await updateGrants(r.stateDir, (f) => ({
      file:
        generation && secretId !== null
          ? commitGrant(f, deviceId, {
              secretId,
              generation: generation.generation,
              now: now(),
              movedFromAnotherBoard,
              ...(r.keyGraceMs !== undefined ? { graceMs: r.keyGraceMs } : {}),
              ...(legacyKeyId !== undefined ? { legacyKeyId } : {}),
            })
          : movedFromAnotherBoard
            ? retireGrants(f, deviceId, now(), "moved to another board")
            : f,
      result: undefined,
    }));
    await flasher.resetToApp();

    const binding: BoardBinding = {
      deviceId,
      mac,
      chip,
      flashSize,
      certSerial: cert.serial,
      certSha256: cert.sha256,
      keyId: identity.payload?.keyId ?? null,
      ...(generation ? { keyGeneration: generation.generation } : {}),
      nvsOffset: nvs.offset,
      nvsSize: nvs.size,
      provisionedAt: now().toISOString(),
    };
    const manifestPath = fleet?.path;
    await recordBinding(
      r.stateDir,
      binding,
      r.force,
      now(),
      manifestPath !== undefined ? () => bindInManifest(manifestPath, binding, r.force) : undefined,
    );
    r.progress(
      `bound ${deviceId} to ${mac}${manifestPath !== undefined ? ` (recorded in ${manifestPath})` : ""}`,
    );
    for (const serial of oldSerials.filter((x) => x !== cert.serial)) {
      try {
        await revokeSerial(r.stateDir, serial, "superseded");
        r.progress(`revoked the old board's certificate ${serial}`);
      } catch (err) {
        // A binding whose certificate this CA never recorded (another PKI): nothing of ours to revoke.
        if (!(err instanceof PkiError && err.code === "not_found")) throw err;
      }
    }
    return result(true, verified, writeMs);

    function result(written: boolean, verifiedResult: boolean, wMs: number): ProvisionResult {
      return {
        deviceId,
        mac,
        chip,
        flashSize,
        nvsOffset: nvs.offset,
        nvsSize: nvs.size,
        usedBytes: built.usedBytes,
        boot,
        certSerial: cert.serial,
        written,
        verified: verifiedResult,
        timings: { connectMs, writeMs: wMs, totalMs: performance.now() - t0 },
      };
    }
  } finally {
    if (reservedId !== undefined) reserved.delete(reservedId);
    await flasher.close();
  }
}

async function readNvsLocation(
  flasher: EspFlasher,
  progress: (l: string) => void,
): Promise<{ offset: number; size: number }> {
  const table = parsePartitionTable(await flasher.readFlash(PARTITION_TABLE_OFFSET, PARTITION_TABLE_SIZE));
  if (!table.ok) {
    if (table.reason === "blank") {
      progress(
        `no partition table on the board; using Moddable's default NVS at 0x${MODDABLE_NVS.offset.toString(16)}`,
      );
      return { ...MODDABLE_NVS };
    }
    throw new ProvisionError(
      "bad_input",
      `${table.message}; flash the firmware first or give --nvs-offset and --nvs-size`,
    );
  }
  const nvs = findNvsPartition(table.entries);
  if (!nvs)
    throw new ProvisionError(
      "bad_input",
      "the board's partition table has no NVS partition; flash a firmware built with one",
    );
  progress(
    `partition table: NVS "${nvs.label}" at 0x${nvs.offset.toString(16)}, 0x${nvs.size.toString(16)} bytes`,
  );
  return { offset: nvs.offset, size: nvs.size };
}

async function pickDeviceId(stateDir: string, mac: string, boards: readonly BoardBinding[]): Promise<string> {
  const ids = await listDeviceIds(pkiPaths(stateDir));
  // Reserved in the same synchronous step as the choice: parallel boards must not pick the same id.
  const mine = boards.find((b) => b.mac === mac);
  const bound = new Set(boards.map((b) => b.deviceId));
  const next = mine?.deviceId ?? ids.find((id) => !bound.has(id) && !reserved.has(id));
  if (!next)
    throw new ProvisionError(
      "no_device",
      "every identity the PKI holds is already on a board; issue more (npm run pki) or pass --device",
    );
  if (reserved.has(next))
    throw new ProvisionError(
      "identity_elsewhere",
      `identity "${next}" is being provisioned on another board right now`,
    );
  reserved.add(next);
  return next;
}

/**
 * The board's own device if the manifest or the bindings file binds it to one of the manifest's devices,
 * else the manifest's first device bound nowhere and not being provisioned right now.
 */
function pickManifestDevice(
  fleet: FleetManifestFile,
  mac: string,
  boards: readonly BoardBinding[],
  inManifest: readonly BindingLike[],
): string {
  const listed = new Set(fleet.manifest.devices.map((d) => d.id));
  const mine = [...inManifest, ...boards].find((b) => b.mac === mac && listed.has(b.deviceId));
  const bound = new Set([...inManifest, ...boards].map((b) => b.deviceId));
  // Reserved in the same synchronous step as the choice: parallel boards must not pick the same id.
  const next =
    mine?.deviceId ?? fleet.manifest.devices.find((d) => !bound.has(d.id) && !reserved.has(d.id))?.id;
  if (!next)
    throw new ProvisionError(
      "no_device",
      `every device of ${fleet.path} is already on a board; add devices to it or pass --device`,
    );
  if (reserved.has(next))
    throw new ProvisionError(
      "identity_elsewhere",
      `identity "${next}" is being provisioned on another board right now`,
    );
  reserved.add(next);
  return next;
}
