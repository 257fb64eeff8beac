import { createCipheriv, createDecipheriv } from "node:crypto";
import type { Aead } from "../../../firmware/src/envelope/aead";
import { GCM_TAG_BYTES } from "../../../firmware/src/envelope/aead";

/** AES-256-GCM through OpenSSL (node:crypto). */
export const nodeAead: Aead = {
  seal(key, nonce, aad, plaintext) {
    const cipher = createCipheriv("aes-256-gcm", key, nonce, { authTagLength: GCM_TAG_BYTES });
    cipher.setAAD(aad);
    const head = cipher.update(plaintext);
    const tail = cipher.final();
    const tag = cipher.getAuthTag();
    const out = new Uint8Array(head.length + tail.length + tag.length);
    out.set(head, 0);
    out.set(tail, head.length);
    out.set(tag, head.length + tail.length);
    return out;
  },
  open(key, nonce, aad, sealed) {
    if (sealed.length < GCM_TAG_BYTES) return null;
    const decipher = createDecipheriv("aes-256-gcm", key, nonce, { authTagLength: GCM_TAG_BYTES });
    decipher.setAAD(aad);
    decipher.setAuthTag(sealed.subarray(sealed.length - GCM_TAG_BYTES));
    const head = decipher.update(sealed.subarray(0, sealed.length - GCM_TAG_BYTES));
    try {
      const tail = decipher.final();
      if (tail.length === 0) return new Uint8Array(head.buffer, head.byteOffset, head.length);
      const out = new Uint8Array(head.length + tail.length);
      out.set(head, 0);
      out.set(tail, head.length);
      return out;
    } catch {
      return null;
    }
  },
};
