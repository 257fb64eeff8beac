// examples/io/tcp/tlssocket: the SDK's declaration (typings/embedded_io/socket/tls.d.ts) is filed
// under the specifier "embedded:io/socket/tls", so a build importing "embedded:io/socket/tcp/tls"
// does not find it.
declare module "embedded:io/socket/tcp/tls" {
  export default class TLSSocket {
    constructor(options: Record<string, unknown>);
    close(): undefined;
    read(count: number | ArrayBufferLike): undefined | ArrayBufferLike;
    write(buffer: ArrayBufferLike): number;
  }
}
