/**
 * An ECMA-419 TCP socket class whose callbacks cannot throw into the host.
 *
 * Moddable's TLSSocket (examples/io/tcp/tlssocket) runs the TLS handshake inside the TCP socket's
 * onReadable/onWritable callbacks and lets its errors escape: a refused certificate ("TLS: certificate: auth
 * err", or the broker check of firmware/tls/certificate-manager) became an uncaught exception, which on an
 * ESP32 is an abort and a reboot loop. Handing TLSSocket this class instead of the SDK's TCP catches such an
 * error where it surfaces, reports it once as a normal connection failure (onError), and then stays silent:
 * the MQTT client closes the socket from there as for any other failure.
 */
import type { Ecma419IoClass } from "./moddable-mqtt-factory";

interface SocketLike {
  read(...args: unknown[]): unknown;
  write(...args: unknown[]): unknown;
  close(): unknown;
}

interface SocketOptions {
  onReadable?: (count: number) => void;
  onWritable?: (count: number) => void;
  onError?: () => void;
  [option: string]: unknown;
}

type SocketClass = new (options: SocketOptions) => SocketLike;

/**
 * Returns a TCP class for one connection attempt; `onFailure(reason)` hears the first error a callback
 * threw, just before the socket's own onError is called.
 */
export function guardedTcp(TCP: Ecma419IoClass, onFailure: (reason: string) => void): Ecma419IoClass {
  const Inner = TCP as unknown as SocketClass;
  class GuardedTCP {
    #socket: SocketLike | undefined;
    #failed = false;

    constructor(options: SocketOptions) {
      const guard =
        (callback: ((count: number) => void) | undefined) =>
        (count: number): void => {
          if (this.#failed || !callback) return;
          try {
            callback(count);
          } catch (e) {
            this.#fail(e, options);
          }
        };
      this.#socket = new Inner({
        ...options,
        onReadable: guard(options.onReadable),
        onWritable: guard(options.onWritable),
        onError: () => {
          if (this.#failed) return;
          this.#failed = true;
          options.onError?.();
        },
      });
    }

    read(...args: unknown[]): unknown {
      return this.#socket?.read(...args);
    }

    write(...args: unknown[]): unknown {
      if (!this.#socket) throw new Error("socket closed");
      return this.#socket.write(...args);
    }

    close(): void {
      const socket = this.#socket;
      this.#socket = undefined;
      socket?.close();
    }

    #fail(e: unknown, options: SocketOptions): void {
      this.#failed = true;
      onFailure(e instanceof Error ? e.message || e.name : String(e));
      options.onError?.();
    }
  }
  return GuardedTCP as unknown as Ecma419IoClass;
}
