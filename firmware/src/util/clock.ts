// The wall clock as the firmware's modules see it. Declared below app/ and identity/ so both can take one
// (app/services re-exports it with the other platform services).
export interface Clock {
  /** Wall clock, milliseconds since the Unix epoch. */
  now(): number;
}
