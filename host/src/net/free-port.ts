import { createServer } from "node:net";

/**
 * Asks the kernel for a free TCP port on `host`. The port is released before the caller
 * binds it, so another process may grab it in between: callers retry on "address in use".
 */
export function findFreePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once("error", reject);
    srv.listen({ port: 0, host, exclusive: true }, () => {
      const addr = srv.address();
      srv.close(() => {
        if (addr && typeof addr === "object") resolve(addr.port);
        else reject(new Error(`could not find a free port on ${host}`));
      });
    });
  });
}
