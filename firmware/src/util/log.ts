// The console as the firmware's modules see it. Declared below app/ and identity/ so both can take one
// (app/services re-exports it with the other platform services).

/** The console: one line per call. Secrets are never passed here. */
export interface Log {
  info(line: string): void;
  warn(line: string): void;
  error(line: string): void;
}
