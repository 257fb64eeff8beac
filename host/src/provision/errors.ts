/** Every way provisioning can fail, each with one line a technician can act on. */
export type ProvisionErrorCode =
  | "no_port"
  | "no_sync"
  | "wrong_boot_mode"
  | "not_esp32"
  | "board_lost"
  | "bad_checksum"
  | "md5_mismatch"
  | "verify_mismatch"
  | "flash_error"
  | "already_bound"
  | "identity_elsewhere"
  | "no_device"
  | "bad_input"
  | "identity"
  | "no_payload_secret";

export class ProvisionError extends Error {
  readonly code: ProvisionErrorCode;
  constructor(code: ProvisionErrorCode, message: string) {
    super(message);
    this.name = "ProvisionError";
    this.code = code;
  }
}
