/**
 * Every failure a user can cause (bad input, missing CA, refused overwrite) is a PkiError: the CLI
 * prints its message as the one error line; anything else is a bug and keeps its stack.
 */
export type PkiErrorCode =
  | "no_ca"
  | "ca_unreadable"
  | "exists"
  | "not_found"
  | "invalid_id"
  | "duplicate_id"
  | "name_clash"
  | "revoked"
  | "expired"
  | "not_yet_valid"
  | "bad_input"
  | "bad_csr"
  | "locked"
  | "io";

export class PkiError extends Error {
  readonly code: PkiErrorCode;
  constructor(code: PkiErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "PkiError";
    this.code = code;
  }
}

/** Turns a file-system error into a one-line PkiError that names the path and the reason. */
export function ioError(action: string, path: string, err: unknown): PkiError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const why =
    code === "ENOSPC"
      ? "disk full"
      : code === "EROFS"
        ? "read-only file system"
        : code === "EACCES" || code === "EPERM"
          ? "permission denied"
          : code === "ENOENT"
            ? "no such file or directory"
            : err instanceof Error
              ? err.message
              : String(err);
  return new PkiError("io", `cannot ${action} ${path}: ${why}`, { cause: err });
}
