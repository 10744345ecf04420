/**
 * The AES modes SMB 3 needs, as pure synchronous functions over bytes.
 *
 * Deno's `node:crypto` has AES-ECB, AES-CBC, AES-CTR and AES-GCM but no
 * AES-CCM, so CMAC (RFC 4493) and CCM (RFC 3610, NIST SP800-38C) are built
 * here from CBC (for the CBC-MAC) and CTR (for the key stream); GCM is a thin
 * wrapper that turns a bad tag into `undefined` instead of an exception.
 *
 * Arguments of the wrong shape (key or nonce length, tag length) throw a
 * `RangeError`; data that fails authentication returns `undefined`.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createCipheriv, createDecipheriv, timingSafeEqual } from "node:crypto";

/** The AES block size in bytes. */
const BLOCK = 16;
/** SMB always uses 16-byte tags. */
const TAG_LENGTH = 16;
const ZERO_BLOCK = new Uint8Array(BLOCK);

/** An encryption result: the ciphertext (as long as the plaintext) and its tag. */
export interface Sealed {
  /** The encrypted bytes, as many as the plaintext had. */
  ciphertext: Uint8Array;
  /** The authentication tag. */
  tag: Uint8Array;
}

/** `aes-128-<mode>` or `aes-256-<mode>` for the key's length. */
function aes<M extends "cbc" | "ctr" | "gcm">(key: Uint8Array, mode: M): `aes-${128 | 256}-${M}` {
  if (key.length !== 16 && key.length !== 32) {
    throw new RangeError(`AES key must be 16 or 32 bytes, got ${key.length}`);
  }
  return `aes-${key.length === 16 ? 128 : 256}-${mode}`;
}

/** A plain Uint8Array view of a Buffer (no copy), so results compare equal to Uint8Arrays. */
function bytes(buffer: Uint8Array): Uint8Array {
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

/** Constant-time equality of two byte strings (false when the lengths differ). */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The last block of AES-CBC with a zero IV over `data` (a whole number of blocks): the CBC-MAC. */
function cbcMac(key: Uint8Array, data: Uint8Array): Uint8Array {
  const cipher = createCipheriv(aes(key, "cbc"), key, ZERO_BLOCK).setAutoPadding(false);
  const out = cipher.update(data);
  cipher.final();
  return bytes(out).slice(out.length - BLOCK);
}

/** AES-CTR over `data`, the 128-bit counter starting at `counter` (big-endian increment). */
function ctr(key: Uint8Array, counter: Uint8Array, data: Uint8Array): Uint8Array {
  const cipher = createCipheriv(aes(key, "ctr"), key, counter);
  const out = cipher.update(data);
  cipher.final();
  return bytes(out);
}

/** Doubling in GF(2^128) as RFC 4493 derives its subkeys: shift left, xor 0x87 on carry. */
function double(block: Uint8Array): Uint8Array {
  const out = new Uint8Array(BLOCK);
  for (let i = 0; i < BLOCK; i++) {
    out[i] = ((block[i]! << 1) | ((block[i + 1] ?? 0) >> 7)) & 0xff;
  }
  if (block[0]! & 0x80) out[BLOCK - 1]! ^= 0x87;
  return out;
}

/**
 * AES-CMAC (RFC 4493): the 16-byte message authentication code of `message`.
 * SMB 3.0 and 3.0.2 sign with it, and 3.1.1 when GMAC is not negotiated.
 *
 * @param key 16 bytes (AES-128, as SMB uses) or 32 bytes
 * @param message any length, also empty
 * @returns the 16-byte tag
 * @throws {RangeError} when the key is neither 16 nor 32 bytes
 *
 * @example RFC 4493, example 2
 * ```ts
 * import assert from "node:assert/strict";
 * import { aesCmac } from "./_aes.ts";
 * const hex = (s: string) => Uint8Array.from(s.match(/../g)!, (b) => parseInt(b, 16));
 * assert.deepEqual(
 *   aesCmac(hex("2b7e151628aed2a6abf7158809cf4f3c"), hex("6bc1bee22e409f96e93d7e117393172a")),
 *   hex("070a16b46b4d4144f79bdd9dd04a287c"),
 * );
 * ```
 */
export function aesCmac(key: Uint8Array, message: Uint8Array): Uint8Array {
  const k1 = double(cbcMac(key, ZERO_BLOCK));
  const complete = message.length > 0 && message.length % BLOCK === 0;
  const blocks = Math.max(1, Math.ceil(message.length / BLOCK));
  const padded = new Uint8Array(blocks * BLOCK);
  padded.set(message);
  if (!complete) padded[message.length] = 0x80;
  const subkey = complete ? k1 : double(k1);
  const last = padded.length - BLOCK;
  for (let i = 0; i < BLOCK; i++) padded[last + i]! ^= subkey[i]!;
  return cbcMac(key, padded);
}

/**
 * AES-GCM encryption with a 16-byte tag (NIST SP800-38D). With an empty
 * plaintext the tag is the GMAC of `aad`, which is how SMB 3.1.1 signs with
 * AES-GMAC.
 *
 * @param key 16 bytes (AES-128-GCM) or 32 bytes (AES-256-GCM)
 * @param nonce the IV; SMB uses 12 bytes
 * @returns the ciphertext and its 16-byte tag
 * @throws {RangeError} when the key or nonce has a wrong length
 *
 * @example McGrew-Viega test case 2
 * ```ts
 * import assert from "node:assert/strict";
 * import { aesGcmEncrypt } from "./_aes.ts";
 * const { ciphertext, tag } = aesGcmEncrypt(
 *   new Uint8Array(16), new Uint8Array(12), new Uint8Array(16), new Uint8Array(0));
 * assert.equal(Array.from(ciphertext, (b) => b.toString(16).padStart(2, "0")).join(""),
 *   "0388dace60b6a392f328c2b971b2fe78");
 * assert.equal(Array.from(tag, (b) => b.toString(16).padStart(2, "0")).join(""),
 *   "ab6e47d42cec13bdf53a67b21257bddf");
 * ```
 */
export function aesGcmEncrypt(
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  aad: Uint8Array,
): Sealed {
  checkGcmNonce(nonce);
  const cipher = createCipheriv(aes(key, "gcm"), key, nonce, { authTagLength: TAG_LENGTH });
  cipher.setAAD(aad);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { ciphertext: bytes(ciphertext), tag: bytes(cipher.getAuthTag()) };
}

/**
 * AES-GCM decryption: the plaintext, or `undefined` when the tag does not
 * match (any change to the key, nonce, ciphertext, AAD or tag).
 *
 * @param tag must be 16 bytes; any other length is `undefined` (truncated tags are refused)
 * @returns the plaintext, or `undefined` when authentication fails
 * @throws {RangeError} when the key or nonce has a wrong length
 *
 * @example A round trip, and a flipped bit refused
 * ```ts
 * import assert from "node:assert/strict";
 * import { aesGcmDecrypt, aesGcmEncrypt } from "./_aes.ts";
 * const key = new Uint8Array(16).fill(7), nonce = new Uint8Array(12).fill(1);
 * const aad = new TextEncoder().encode("header");
 * const sealed = aesGcmEncrypt(key, nonce, new TextEncoder().encode("body"), aad);
 * assert.equal(new TextDecoder().decode(aesGcmDecrypt(key, nonce, sealed.ciphertext, aad, sealed.tag)), "body");
 * sealed.ciphertext[0]! ^= 1;
 * assert.equal(aesGcmDecrypt(key, nonce, sealed.ciphertext, aad, sealed.tag), undefined);
 * ```
 */
export function aesGcmDecrypt(
  key: Uint8Array,
  nonce: Uint8Array,
  ciphertext: Uint8Array,
  aad: Uint8Array,
  tag: Uint8Array,
): Uint8Array | undefined {
  checkGcmNonce(nonce);
  const name = aes(key, "gcm");
  if (tag.length !== TAG_LENGTH) return undefined;
  const decipher = createDecipheriv(name, key, nonce, { authTagLength: TAG_LENGTH });
  decipher.setAuthTag(tag);
  decipher.setAAD(aad);
  const plaintext = decipher.update(ciphertext);
  try {
    decipher.final();
  } catch {
    return undefined;
  }
  return bytes(plaintext);
}

function checkGcmNonce(nonce: Uint8Array): void {
  if (nonce.length === 0) throw new RangeError("AES-GCM nonce must not be empty");
}

/** CCM's length field size q (bytes) for the nonce, after checking the nonce and tag lengths. */
function ccmQ(nonce: Uint8Array, tagLength: number): number {
  if (nonce.length < 7 || nonce.length > 13) {
    throw new RangeError(`AES-CCM nonce must be 7 to 13 bytes, got ${nonce.length}`);
  }
  if (!isCcmTagLength(tagLength)) {
    throw new RangeError(`AES-CCM tag must be 4, 6, 8, 10, 12, 14 or 16 bytes, got ${tagLength}`);
  }
  return 15 - nonce.length;
}

function isCcmTagLength(n: number): boolean {
  return Number.isInteger(n) && n >= 4 && n <= 16 && n % 2 === 0;
}

/** Whether a payload of `length` bytes fits CCM's q-byte length field. */
function fitsCcm(length: number, q: number): boolean {
  return q >= 6 || length < 2 ** (8 * q);
}

/** Counter block A0 = flags (q - 1) || nonce || 0 (SP800-38C A.3); A1 follows by increment. */
function ccmCounter(nonce: Uint8Array, q: number): Uint8Array {
  const a0 = new Uint8Array(BLOCK);
  a0[0] = q - 1;
  a0.set(nonce, 1);
  return a0;
}

/**
 * The unencrypted CCM tag T: the CBC-MAC of B0 || encoded AAD || payload
 * (SP800-38C A.2), truncated to `tagLength`.
 */
function ccmMac(
  key: Uint8Array,
  nonce: Uint8Array,
  payload: Uint8Array,
  aad: Uint8Array,
  tagLength: number,
  q: number,
): Uint8Array {
  let aadHeader: Uint8Array;
  if (aad.length === 0) aadHeader = new Uint8Array(0);
  else if (aad.length < 0xff00) aadHeader = Uint8Array.of(aad.length >> 8, aad.length & 0xff);
  else if (aad.length < 2 ** 32) {
    aadHeader = new Uint8Array(6);
    aadHeader[0] = 0xff;
    aadHeader[1] = 0xfe;
    new DataView(aadHeader.buffer).setUint32(2, aad.length);
  } else throw new RangeError(`AES-CCM associated data must be under 4 GiB, got ${aad.length}`);

  const aadBlocks = Math.ceil((aadHeader.length + aad.length) / BLOCK);
  const payloadBlocks = Math.ceil(payload.length / BLOCK);
  const b = new Uint8Array(BLOCK * (1 + aadBlocks + payloadBlocks));
  b[0] = (aad.length > 0 ? 0x40 : 0) | (((tagLength - 2) / 2) << 3) | (q - 1);
  b.set(nonce, 1);
  for (let i = 0, n = payload.length; i < q && n > 0; i++, n = Math.floor(n / 256)) {
    b[BLOCK - 1 - i] = n & 0xff;
  }
  b.set(aadHeader, BLOCK);
  b.set(aad, BLOCK + aadHeader.length);
  b.set(payload, BLOCK * (1 + aadBlocks));
  return cbcMac(key, b).subarray(0, tagLength);
}

/**
 * AES-CCM encryption (RFC 3610, NIST SP800-38C), built from AES-CBC and
 * AES-CTR. SMB 3.x uses an 11-byte nonce and a 16-byte tag.
 *
 * @param key 16 bytes (AES-128-CCM) or 32 bytes (AES-256-CCM)
 * @param nonce 7 to 13 bytes (SMB: 11)
 * @param tagLength 4, 6, 8, 10, 12, 14 or 16 bytes (default 16, as SMB uses)
 * @returns the ciphertext and its tag
 * @throws {RangeError} when the key, nonce or tag length is wrong, or the
 * plaintext is too long for the nonce (2^(8 * (15 - nonce length)) bytes)
 *
 * @example NIST SP800-38C, example C.1 (4-byte tag)
 * ```ts
 * import assert from "node:assert/strict";
 * import { aesCcmEncrypt } from "./_aes.ts";
 * const hex = (s: string) => Uint8Array.from(s.match(/../g)!, (b) => parseInt(b, 16));
 * const { ciphertext, tag } = aesCcmEncrypt(hex("404142434445464748494a4b4c4d4e4f"),
 *   hex("10111213141516"), hex("20212223"), hex("0001020304050607"), 4);
 * assert.deepEqual(ciphertext, hex("7162015b"));
 * assert.deepEqual(tag, hex("4dac255d"));
 * ```
 */
export function aesCcmEncrypt(
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  aad: Uint8Array,
  tagLength = TAG_LENGTH,
): Sealed {
  const q = ccmQ(nonce, tagLength);
  if (!fitsCcm(plaintext.length, q)) {
    throw new RangeError(
      `AES-CCM with a ${nonce.length}-byte nonce encrypts under ${
        2 ** (8 * q)
      } bytes, got ${plaintext.length}`,
    );
  }
  const mac = ccmMac(key, nonce, plaintext, aad, tagLength, q);
  // One CTR pass from A0 over a zero block then the plaintext: S0 first, then the ciphertext.
  const input = new Uint8Array(BLOCK + plaintext.length);
  input.set(plaintext, BLOCK);
  const stream = ctr(key, ccmCounter(nonce, q), input);
  const tag = mac.slice();
  for (let i = 0; i < tagLength; i++) tag[i]! ^= stream[i]!;
  return { ciphertext: stream.slice(BLOCK), tag };
}

/**
 * AES-CCM decryption: the plaintext, or `undefined` when the tag does not
 * match. The tag length is `tag.length`.
 *
 * @returns the plaintext, or `undefined` when authentication fails or the
 * tag or ciphertext length cannot be valid CCM
 * @throws {RangeError} when the key or nonce has a wrong length
 *
 * @example A round trip with SMB's 11-byte nonce, and a changed AAD refused
 * ```ts
 * import assert from "node:assert/strict";
 * import { aesCcmDecrypt, aesCcmEncrypt } from "./_aes.ts";
 * const key = new Uint8Array(16).fill(3), nonce = new Uint8Array(11).fill(9);
 * const body = new TextEncoder().encode("body"), aad = new Uint8Array(32);
 * const { ciphertext, tag } = aesCcmEncrypt(key, nonce, body, aad);
 * assert.deepEqual(aesCcmDecrypt(key, nonce, ciphertext, aad, tag), body);
 * assert.equal(aesCcmDecrypt(key, nonce, ciphertext, new Uint8Array(32).fill(1), tag), undefined);
 * ```
 */
export function aesCcmDecrypt(
  key: Uint8Array,
  nonce: Uint8Array,
  ciphertext: Uint8Array,
  aad: Uint8Array,
  tag: Uint8Array,
): Uint8Array | undefined {
  const q = ccmQ(nonce, TAG_LENGTH);
  aes(key, "ctr");
  if (!isCcmTagLength(tag.length) || !fitsCcm(ciphertext.length, q)) return undefined;
  const input = new Uint8Array(BLOCK + ciphertext.length);
  input.set(ciphertext, BLOCK);
  const stream = ctr(key, ccmCounter(nonce, q), input);
  const plaintext = stream.slice(BLOCK);
  const expected = ccmMac(key, nonce, plaintext, aad, tag.length, q);
  for (let i = 0; i < tag.length; i++) expected[i]! ^= stream[i]!;
  return equalBytes(expected, tag) ? plaintext : undefined;
}
