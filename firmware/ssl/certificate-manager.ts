// The firmware's replacement for the SDK's `ssl/cert` module: Moddable's TLS session asks it whether to trust
// the server. ssl/manifest.json maps "ssl/cert" here and the SDK's original to "ssl/cert-sdk"; firmware/manifest.json
// must include it before $(MODDABLE)/modules/crypt/tls_419.json, because mcconfig keeps the first source it meets
// for a module name and would otherwise silently keep the SDK's (checked on SDK 8.2.3).
//
// Before the SDK's own check (which also matches the server name against the certificate's SANs), the
// server must pass BrokerTrust (src/tls/broker-trust): its key is one of the broker pins provisioned in NVS,
// and its chain holds up link by link to the fleet root. A refusal throws an Error naming the reason, which
// src/platform/guarded-tcp turns into a normal failed connection (logged, counted, retried with backoff).
// Only the MQTT connection uses TLS on this board, so a TLS session without pins refuses every server.
import SdkCertificateManager from "ssl/cert-sdk";
import type { SdkCertificateOptions } from "ssl/cert-sdk";
import X509 from "x509";
import { Digest } from "crypt";
import BrokerTrust, { describeVerdict } from "../src/tls/broker-trust";

export interface PinnedCertificateOptions extends SdkCertificateOptions {
  /** pin-sha256 values of the broker keys (src/app/mqtt-client's MqttTlsOptions.brokerPins). */
  brokerPins?: ArrayBuffer[];
}

export default class CertificateManager extends SdkCertificateManager {
  readonly #trust: BrokerTrust | undefined;
  readonly #problem: string;

  constructor(options: PinnedCertificateOptions) {
    super(options);
    let trust: BrokerTrust | undefined;
    let problem = "";
    if (!options.brokerPins?.length || !options.certificate)
      problem = "no broker pins or trust anchor were provisioned";
    else {
      try {
        trust = new BrokerTrust({
          pins: options.brokerPins.map((pin) => new Uint8Array(pin)),
          anchor: new Uint8Array(options.certificate),
          sha256: (data) => {
            const digest = new Digest("SHA256");
            digest.write(copy(data));
            return new Uint8Array(digest.close());
          },
          verifySignature: (issuer, cert) =>
            this._verify(X509.decodeSPKI(copy(issuer)), X509.decode(copy(cert))),
        });
      } catch (e) {
        problem = e instanceof Error ? e.message : String(e);
      }
    }
    this.#trust = trust;
    this.#problem = problem;
  }

  override verify(certs: (ArrayBuffer | Uint8Array)[], options: object): boolean {
    if (!this.#trust) throw new Error(`broker refused: ${this.#problem}`);
    const verdict = this.#trust.check(
      certs.map((c) => (c instanceof Uint8Array ? c : new Uint8Array(c))),
      Date.now(),
    );
    if (!verdict.ok) throw new Error(describeVerdict(verdict));
    return super.verify(certs, options);
  }
}

function copy(bytes: Uint8Array): ArrayBuffer {
  return bytes.slice().buffer as ArrayBuffer;
}
