import mqttPacket from "mqtt-packet";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FrameSplitter, encodePublish, encodePuback } from "../../src/emulator/mqtt/frames";

/** Parses with mqtt-packet, the codec mqtt.js and Aedes use: the hand encoder must agree with it. */
function parse(buf: Buffer): mqttPacket.Packet[] {
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  const out: mqttPacket.Packet[] = [];
  parser.on("packet", (p) => out.push(p));
  parser.on("error", (e) => {
    throw e;
  });
  parser.parse(buf);
  return out;
}

describe("MQTT frames", () => {
  it("encodes PUBLISH exactly as mqtt-packet reads it, for any size, QoS, retain and DUP", () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 40 }).filter((t) => !t.includes("\u0000")),
        fc.uint8Array({ maxLength: 20000 }),
        fc.constantFrom<0 | 1>(0, 1),
        fc.boolean(),
        fc.boolean(),
        fc.integer({ min: 1, max: 65535 }),
        (topic, payload, qos, retain, dup, id) => {
          const [p] = parse(
            encodePublish(Buffer.from(topic), payload, qos, retain, id, dup),
          ) as mqttPacket.IPublishPacket[];
          expect(p!.cmd).toBe("publish");
          expect(p!.topic).toBe(topic);
          expect(Buffer.from(p!.payload as Buffer).equals(Buffer.from(payload))).toBe(true);
          expect(p!.qos).toBe(qos);
          expect(p!.retain).toBe(retain);
          expect(p!.dup).toBe(dup);
          if (qos > 0) expect(p!.messageId).toBe(id);
        },
      ),
      { numRuns: 200 },
    );
    expect((parse(encodePuback(513))[0] as mqttPacket.IPubackPacket).messageId).toBe(513);
  });

  it("splits a byte stream into packets however it is chunked", () => {
    const packets = [
      mqttPacket.generate({ cmd: "connack", returnCode: 0, sessionPresent: true }),
      encodePuback(7),
      encodePublish(Buffer.from("electrolyser/x/command"), Buffer.alloc(300, 1), 1, false, 9, false),
      mqttPacket.generate({ cmd: "pingresp" }),
      encodePublish(Buffer.from("t"), Buffer.alloc(20000, 2), 0, true, 0, false), // 3-byte remaining length
    ];
    const stream = Buffer.concat(packets);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: stream.length - 1 }), { maxLength: 12 }), (cuts) => {
        const points = [...new Set(cuts)].sort((a, b) => a - b);
        const splitter = new FrameSplitter();
        const seen: [number, number][] = [];
        let from = 0;
        for (const to of [...points, stream.length]) {
          expect(
            splitter.push(stream.subarray(from, to), (type, _f, body) => seen.push([type, body.length])),
          ).toBe(true);
          from = to;
        }
        expect(seen).toEqual([
          [2, 2],
          [4, 2],
          [3, 2 + 22 + 2 + 300],
          [13, 0],
          [3, 2 + 1 + 20000],
        ]);
      }),
    );
  });

  it("rejects a remaining length longer than four bytes", () => {
    expect(new FrameSplitter().push(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]), () => undefined)).toBe(
      false,
    );
  });
});
