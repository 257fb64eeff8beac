// What a fixed identity costs per board: SessionTrust hands the client the caller's buffers when a view is the
// whole buffer (an emulated fleet shares one CA and one pin list among thousands of boards), and copies only a
// view into a larger buffer, so the client always gets exactly the identity's bytes.
import { describe, expect, it } from "vitest";
import { SessionTrust } from "../../src/app/session-trust";

const bytes = (n: number, start: number): Uint8Array =>
  Uint8Array.from({ length: n }, (_, i) => (start + i) & 0xff);

describe("SessionTrust with fixed credentials", () => {
  it("does not copy buffers that are exactly the identity's bytes", () => {
    const ca = bytes(64, 1);
    const pin = bytes(32, 7);
    const trust = new SessionTrust({
      tls: { caDer: ca, certDer: bytes(40, 3), keyDer: bytes(20, 5), brokerPins: [pin] },
    });
    const tls = trust.current().tls;
    expect(tls.caDer).toBe(ca.buffer);
    expect(tls.brokerPins[0]).toBe(pin.buffer);
    // The same identity again: the cached options, not new ones per connection.
    expect(trust.current().tls).toBe(tls);
  });

  it("copies a view into a larger buffer, exactly its bytes", () => {
    const backing = bytes(100, 0);
    const ca = backing.subarray(10, 30);
    const trust = new SessionTrust({
      tls: { caDer: ca, certDer: bytes(40, 3), keyDer: bytes(20, 5), brokerPins: [] },
    });
    const caDer = trust.current().tls.caDer;
    expect(caDer).not.toBe(backing.buffer);
    expect([...new Uint8Array(caDer)]).toEqual([...ca]);
  });
});
