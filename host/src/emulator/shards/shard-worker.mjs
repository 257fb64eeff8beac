// Worker-thread entry: the shard code is TypeScript, so register tsx in this thread before loading it (a worker
// does not inherit the loader of the thread that started it when that one runs under a test runner).
import { register } from "tsx/esm/api";

register();
await import("./shard-worker.ts");
