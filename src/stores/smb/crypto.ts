/**
 * SMB 2 and 3 cryptography as pure functions over bytes, no I/O: key
 * derivation (SP800-108 KDF, MS-SMB2 3.2.5.3.1), the 3.1.1 preauth integrity
 * hash, message signing (HMAC-SHA256, AES-CMAC, AES-GMAC: MS-SMB2 3.1.4.1)
 * and encryption in a TRANSFORM_HEADER (AES-128/256-CCM/GCM: MS-SMB2
 * 3.1.4.3). Everything is synchronous and uses `node:crypto` only; the AES
 * modes Deno lacks live in `_aes.ts`.
 *
 * Arguments of the wrong shape throw `RangeError`; bytes from the wire that
 * fail a check make {@linkcode verify} return `false` and
 * {@linkcode unseal} return `undefined`, never an exception. No key ever
 * appears in an error message.
 *
 * @module
 */

import { createHash, createHmac, randomBytes } from "node:crypto";
import {
  aesCcmDecrypt,
  aesCcmEncrypt,
  aesCmac,
  aesGcmDecrypt,
  aesGcmEncrypt,
  equalBytes,
  type Sealed,
} from "./_aes.ts";

export { aesCcmDecrypt, aesCcmEncrypt, aesCmac, aesGcmDecrypt, aesGcmEncrypt, type Sealed };

/** How SMB2 messages are signed: 2.x HMAC-SHA256, 3.0/3.0.2 AES-CMAC, 3.1.1 AES-CMAC or AES-GMAC. */
export type SigningAlgorithm = "hmac-sha256" | "aes-cmac" | "aes-gmac";
/** The SMB 3 ciphers: 3.0/3.0.2 only AES-128-CCM, 3.1.1 any of them. */
export type Cipher = "aes-128-ccm" | "aes-128-gcm" | "aes-256-ccm" | "aes-256-gcm";

/** The SMB2 header's ProtocolId, 0xFE 'S' 'M' 'B'. */
const SMB2_MAGIC = [0xfe, 0x53, 0x4d, 0x42];
/** The TRANSFORM_HEADER's ProtocolId, 0xFD 'S' 'M' 'B'. */
const TRANSFORM_MAGIC = [0xfd, 0x53, 0x4d, 0x42];
/** Size of the SMB2 sync/async header. */
export const SMB2_HEADER_SIZE = 64;
/** Size of the SMB2 TRANSFORM_HEADER that precedes an encrypted message. */
export const TRANSFORM_HEADER_SIZE = 52;
/** SMB2_FLAGS_SERVER_TO_REDIR: the message is a response. */
export const SMB2_FLAGS_SERVER_TO_REDIR = 0x00000001;
/** SMB2_FLAGS_SIGNED. */
export const SMB2_FLAGS_SIGNED = 0x00000008;
/** SMB2 CANCEL's command code. */
const SMB2_CANCEL = 0x000c;
/** Header offsets (MS-SMB2 2.2.1). */
const COMMAND_AT = 12, FLAGS_AT = 16, MESSAGE_ID_AT = 24, SIGNATURE_AT = 48;
/** TRANSFORM_HEADER offsets (MS-SMB2 2.2.41); the AAD is the header from the nonce on. */
const T_SIGNATURE_AT = 4, T_NONCE_AT = 20, T_SIZE_AT = 36, T_FLAGS_AT = 42, T_SESSION_AT = 44;
/** TRANSFORM_HEADER Flags (3.1.1) / EncryptionAlgorithm (3.0.x): 0x0001 in both. */
const TRANSFORM_ENCRYPTED = 0x0001;

const encoder = new TextEncoder();
/** A label or context as SMB passes it to the KDF: ASCII with a trailing NUL. */
function z(text: string): Uint8Array {
  return encoder.encode(`${text}\0`);
}

/**
 * The SP800-108 KDF in counter mode with HMAC-SHA256 as PRF, r = 32, as
 * MS-SMB2 3.1.4.2 uses it: HMAC(key, [1]_32 || label || 0x00 || context ||
 * [bits]_32). One round gives 256 bits, enough for both lengths.
 *
 * @param label as SMB passes it, with its trailing NUL (`"SMBSigningKey\0"`)
 * @param context as SMB passes it (`"SmbSign\0"`, or the 64-byte preauth hash)
 * @param bits L, the key length: 128 or 256
 * @returns a key of `bits / 8` bytes
 * @throws {RangeError} when `bits` is neither 128 nor 256
 *
 * @example The SMB 3.0 signing key of Microsoft's "Encryption in SMB 3.0" example
 * ```ts
 * import assert from "node:assert/strict";
 * import { kdf } from "./crypto.ts";
 * const hex = (s: string) => Uint8Array.from(s.match(/../g)!, (b) => parseInt(b, 16));
 * const utf8 = (s: string) => new TextEncoder().encode(s);
 * assert.deepEqual(
 *   kdf(hex("B4546771B515F766A86735532DD6C4F0"), utf8("SMB2AESCMAC\0"), utf8("SmbSign\0"), 128),
 *   hex("F773CD23C18FD1E08EE510CADA7CF852"),
 * );
 * ```
 */
export function kdf(
  key: Uint8Array,
  label: Uint8Array,
  context: Uint8Array,
  bits: 128 | 256,
): Uint8Array {
  if (bits !== 128 && bits !== 256) {
    throw new RangeError(`KDF length must be 128 or 256 bits, got ${bits}`);
  }
  const counterAndLength = new Uint8Array(4);
  const hmac = createHmac("sha256", key);
  new DataView(counterAndLength.buffer).setUint32(0, 1);
  hmac.update(counterAndLength).update(label).update(new Uint8Array(1)).update(context);
  new DataView(counterAndLength.buffer).setUint32(0, bits);
  hmac.update(counterAndLength);
  return new Uint8Array(hmac.digest()).slice(0, bits / 8);
}

/**
 * One step of the SMB 3.1.1 preauth integrity hash (MS-SMB2 3.2.5.2,
 * 3.2.5.3.1): SHA-512(previous || message). Start from 64 zero bytes and feed
 * NEGOTIATE request, NEGOTIATE response, then each SESSION_SETUP request and
 * each response that is not the final success.
 *
 * @param previous the hash so far, 64 bytes
 * @param message the whole SMB2 message as sent or received
 * @returns the new 64-byte hash
 * @throws {RangeError} when `previous` is not 64 bytes
 *
 * @example The first step from 64 zero bytes
 * ```ts
 * import assert from "node:assert/strict";
 * import { createHash } from "node:crypto";
 * import { preauthHash } from "./crypto.ts";
 * const message = new TextEncoder().encode("negotiate");
 * assert.deepEqual(
 *   preauthHash(new Uint8Array(64), message),
 *   new Uint8Array(createHash("sha512").update(new Uint8Array(64)).update(message).digest()),
 * );
 * ```
 */
export function preauthHash(previous: Uint8Array, message: Uint8Array): Uint8Array {
  if (previous.length !== 64) {
    throw new RangeError(`Preauth integrity hash must be 64 bytes, got ${previous.length}`);
  }
  return new Uint8Array(createHash("sha512").update(previous).update(message).digest());
}

/** The keys of one SMB session (MS-SMB2 3.2.5.3.1). */
export interface SessionKeys {
  /** Signs requests and verifies responses. */
  signingKey: Uint8Array;
  /** Encrypts client-to-server messages (empty for SMB 2.x, which has no encryption). */
  encryptionKey: Uint8Array;
  /** Decrypts server-to-client messages (empty for SMB 2.x). */
  decryptionKey: Uint8Array;
  /** What an application asking for the session key gets. */
  applicationKey: Uint8Array;
}

/** The dialects {@linkcode deriveKeys} knows: 2.0.2, 2.1, 3.0, 3.0.2, 3.1.1. */
export const DIALECTS: readonly number[] = [0x0202, 0x0210, 0x0300, 0x0302, 0x0311];

/**
 * The session's keys per MS-SMB2 3.2.5.3.1 for the negotiated dialect.
 *
 * - 2.0.2, 2.1: the signing key and the application key are the session
 *   key; there are no encryption keys (empty arrays).
 * - 3.0, 3.0.2: KDF(SessionKey) with labels "SMB2AESCMAC"/"SmbSign",
 *   "SMB2AESCCM"/"ServerIn " (client to server) and "ServerOut", "SMB2APP"/"SmbRpc".
 * - 3.1.1: labels "SMBSigningKey", "SMBC2SCipherKey", "SMBS2CCipherKey",
 *   "SMBAppKey" with the preauth integrity hash as context. For AES-256
 *   ciphers the two cipher keys are 256 bits and derived from the full
 *   session key (Session.FullSessionKey, longer than 16 bytes with Kerberos);
 *   the signing and application keys stay 128 bits from the first 16 bytes.
 *
 * SessionKey is the first 16 bytes of `sessionKey`, right-padded with zeros
 * when shorter (MS-SMB2 3.2.1.3).
 *
 * @param dialect the negotiated DialectRevision, e.g. 0x0311
 * @param sessionKey the key the authentication produced (NTLM: the exported session key)
 * @param cipher the negotiated cipher, if any (3.x only; 3.0 and 3.0.2 only AES-128-CCM)
 * @param preauth the final 64-byte preauth integrity hash (3.1.1 only, required there)
 * @returns the four keys, fresh copies
 * @throws {RangeError} for an unknown dialect, an empty session key, a cipher
 * the dialect does not have, or a missing or wrong-sized preauth hash on 3.1.1
 *
 * @example SMB 3.0 (Microsoft's "Encryption in SMB 3.0" example)
 * ```ts
 * import assert from "node:assert/strict";
 * import { deriveKeys } from "./crypto.ts";
 * const hex = (s: string) => Uint8Array.from(s.match(/../g)!, (b) => parseInt(b, 16));
 * const keys = deriveKeys(0x0300, hex("B4546771B515F766A86735532DD6C4F0"), "aes-128-ccm");
 * assert.deepEqual(keys.encryptionKey, hex("261B72350558F2E9DCF613070383EDBF"));
 * assert.deepEqual(keys.decryptionKey, hex("8FE2B57EC34D2DB5B1A9727F526BBDB5"));
 * ```
 */
export function deriveKeys(
  dialect: number,
  sessionKey: Uint8Array,
  cipher?: Cipher,
  preauth?: Uint8Array,
): SessionKeys {
  if (!DIALECTS.includes(dialect)) throw new RangeError(`Unknown SMB dialect 0x${hex4(dialect)}`);
  if (sessionKey.length === 0) throw new RangeError("Session key must not be empty");
  const key16 = new Uint8Array(16);
  key16.set(sessionKey.subarray(0, 16));

  if (dialect < 0x0300) {
    if (cipher !== undefined) {
      throw new RangeError(
        `SMB dialect 0x${hex4(dialect)} has no encryption, got cipher "${cipher}"`,
      );
    }
    return {
      signingKey: key16,
      encryptionKey: new Uint8Array(0),
      decryptionKey: new Uint8Array(0),
      applicationKey: key16.slice(),
    };
  }

  if (dialect < 0x0311) {
    if (cipher !== undefined && cipher !== "aes-128-ccm") {
      throw new RangeError(
        `SMB dialect 0x${hex4(dialect)} encrypts only with "aes-128-ccm", got "${cipher}"`,
      );
    }
    return {
      signingKey: kdf(key16, z("SMB2AESCMAC"), z("SmbSign"), 128),
      encryptionKey: kdf(key16, z("SMB2AESCCM"), z("ServerIn "), 128),
      decryptionKey: kdf(key16, z("SMB2AESCCM"), z("ServerOut"), 128),
      applicationKey: kdf(key16, z("SMB2APP"), z("SmbRpc"), 128),
    };
  }

  if (preauth === undefined || preauth.length !== 64) {
    throw new RangeError(
      `SMB 3.1.1 keys need the 64-byte preauth integrity hash, got ${preauth?.length ?? "none"}`,
    );
  }
  const wide = cipher === "aes-256-ccm" || cipher === "aes-256-gcm";
  const cipherKey = wide ? sessionKey : key16;
  const bits = wide ? 256 : 128;
  return {
    signingKey: kdf(key16, z("SMBSigningKey"), preauth, 128),
    encryptionKey: kdf(cipherKey, z("SMBC2SCipherKey"), preauth, bits),
    decryptionKey: kdf(cipherKey, z("SMBS2CCipherKey"), preauth, bits),
    applicationKey: kdf(key16, z("SMBAppKey"), preauth, 128),
  };
}

function hex4(n: number): string {
  return (n >>> 0).toString(16).padStart(4, "0");
}

function isSmb2(message: Uint8Array): boolean {
  return message.length >= SMB2_HEADER_SIZE && SMB2_MAGIC.every((b, i) => message[i] === b);
}

function checkSmb2(message: Uint8Array): void {
  if (!isSmb2(message)) {
    throw new RangeError(
      `Not an SMB2 message: need at least ${SMB2_HEADER_SIZE} bytes starting 0xFE "SMB", got ${message.length} bytes`,
    );
  }
}

/**
 * The 12-byte AES-GMAC nonce of an SMB2 message (MS-SMB2 3.1.4.1): the
 * MessageId (8 bytes, little-endian), then a 32-bit little-endian word whose
 * bit 0 is set when the sender is the server (SMB2_FLAGS_SERVER_TO_REDIR in
 * the header) and bit 1 when the message is a CANCEL.
 *
 * @param message an SMB2 message (at least its 64-byte header)
 * @returns the 12-byte nonce
 * @throws {RangeError} when `message` is not an SMB2 message
 *
 * @example A response to MessageId 5
 * ```ts
 * import assert from "node:assert/strict";
 * import { gmacNonce } from "./crypto.ts";
 * const header = new Uint8Array(64);
 * header.set([0xfe, 0x53, 0x4d, 0x42]);
 * header[16] = 0x01; // SMB2_FLAGS_SERVER_TO_REDIR
 * header[24] = 5; // MessageId
 * assert.deepEqual(gmacNonce(header), Uint8Array.of(5, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0));
 * ```
 */
export function gmacNonce(message: Uint8Array): Uint8Array {
  checkSmb2(message);
  const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
  const nonce = new Uint8Array(12);
  nonce.set(message.subarray(MESSAGE_ID_AT, MESSAGE_ID_AT + 8));
  const fromServer = (view.getUint32(FLAGS_AT, true) & SMB2_FLAGS_SERVER_TO_REDIR) !== 0;
  const cancel = view.getUint16(COMMAND_AT, true) === SMB2_CANCEL;
  nonce[8] = (fromServer ? 1 : 0) | (cancel ? 2 : 0);
  return nonce;
}

/** The signature of `zeroed`, a copy of the message whose Signature field is already zero. */
function signatureOfZeroed(alg: SigningAlgorithm, key: Uint8Array, zeroed: Uint8Array): Uint8Array {
  switch (alg) {
    case "hmac-sha256":
      return new Uint8Array(createHmac("sha256", key).update(zeroed).digest()).slice(0, 16);
    case "aes-cmac":
      return aesCmac(key, zeroed);
    case "aes-gmac":
      return aesGcmEncrypt(key, gmacNonce(zeroed), new Uint8Array(0), zeroed).tag;
    default:
      throw new RangeError(`Unknown SMB signing algorithm "${alg as string}"`);
  }
}

/** A copy of `message` with its Signature field zeroed. */
function zeroedCopy(message: Uint8Array): Uint8Array {
  const copy = message.slice();
  copy.fill(0, SIGNATURE_AT, SIGNATURE_AT + 16);
  return copy;
}

/**
 * The 16-byte signature of an SMB2 message (MS-SMB2 3.1.4.1): computed over
 * the whole message (header, body, and any compound padding) with the
 * Signature field taken as zero, whatever it holds. HMAC-SHA256 is truncated
 * to 16 bytes; AES-GMAC uses {@linkcode gmacNonce}. The Flags field is used
 * as it is: {@linkcode sign} sets SMB2_FLAGS_SIGNED first.
 *
 * @param key the signing key (16 bytes for AES-CMAC and AES-GMAC)
 * @param message one SMB2 message of a chain, as it goes on the wire
 * @returns the 16-byte signature
 * @throws {RangeError} when `message` is not an SMB2 message or the key length is wrong
 *
 * @example HMAC-SHA256 ignores what the Signature field holds
 * ```ts
 * import assert from "node:assert/strict";
 * import { signature } from "./crypto.ts";
 * const message = new Uint8Array(72);
 * message.set([0xfe, 0x53, 0x4d, 0x42]);
 * const key = new Uint8Array(16).fill(1);
 * const before = signature("hmac-sha256", key, message);
 * message.fill(0xaa, 48, 64);
 * assert.deepEqual(signature("hmac-sha256", key, message), before);
 * ```
 */
export function signature(alg: SigningAlgorithm, key: Uint8Array, message: Uint8Array): Uint8Array {
  checkSmb2(message);
  return signatureOfZeroed(alg, key, zeroedCopy(message));
}

/**
 * A signed copy of an SMB2 message: SMB2_FLAGS_SIGNED set in Flags and the
 * Signature field filled. The input is not changed.
 *
 * @param key the signing key
 * @param message one SMB2 message of a chain
 * @returns the signed copy
 * @throws {RangeError} when `message` is not an SMB2 message or the key length is wrong
 *
 * @example Sign, then verify; a changed byte fails
 * ```ts
 * import assert from "node:assert/strict";
 * import { sign, verify } from "./crypto.ts";
 * const message = new Uint8Array(80);
 * message.set([0xfe, 0x53, 0x4d, 0x42]);
 * const key = new Uint8Array(16).fill(2);
 * const signed = sign("aes-cmac", key, message);
 * assert.equal(signed[16]! & 0x08, 0x08);
 * assert.equal(verify("aes-cmac", key, signed), true);
 * signed[70]! ^= 1;
 * assert.equal(verify("aes-cmac", key, signed), false);
 * ```
 */
export function sign(alg: SigningAlgorithm, key: Uint8Array, message: Uint8Array): Uint8Array {
  checkSmb2(message);
  const signed = zeroedCopy(message);
  signed[FLAGS_AT]! |= SMB2_FLAGS_SIGNED;
  signed.set(signatureOfZeroed(alg, key, signed), SIGNATURE_AT);
  return signed;
}

/**
 * Whether an SMB2 message carries a valid signature: true only when it is an
 * SMB2 message, SMB2_FLAGS_SIGNED is set, and the Signature field matches
 * (compared in constant time). Anything else, including bytes too short to
 * be a header, is `false`, never an exception.
 *
 * @param key the signing key
 * @param message one SMB2 message of a chain, as received
 * @returns whether the signature is valid
 * @throws {RangeError} only when the key length is wrong for the algorithm
 *
 * @example An unsigned message does not verify
 * ```ts
 * import assert from "node:assert/strict";
 * import { verify } from "./crypto.ts";
 * const message = new Uint8Array(64);
 * message.set([0xfe, 0x53, 0x4d, 0x42]);
 * assert.equal(verify("hmac-sha256", new Uint8Array(16), message), false);
 * ```
 */
export function verify(alg: SigningAlgorithm, key: Uint8Array, message: Uint8Array): boolean {
  if (!isSmb2(message)) return false;
  if ((message[FLAGS_AT]! & SMB2_FLAGS_SIGNED) === 0) return false;
  const expected = signatureOfZeroed(alg, key, zeroedCopy(message));
  return equalBytes(expected, message.subarray(SIGNATURE_AT, SIGNATURE_AT + 16));
}

/** The nonce length a cipher uses: 11 bytes for CCM, 12 for GCM. */
export function nonceLength(cipher: Cipher): 11 | 12 {
  return cipher.endsWith("ccm") ? 11 : 12;
}

function checkCipherKey(cipher: Cipher, key: Uint8Array): void {
  const size = cipher === "aes-128-ccm" || cipher === "aes-128-gcm"
    ? 16
    : cipher === "aes-256-ccm" || cipher === "aes-256-gcm"
    ? 32
    : 0;
  if (size === 0) throw new RangeError(`Unknown SMB cipher "${cipher as string}"`);
  if (key.length !== size) {
    throw new RangeError(`Cipher "${cipher}" needs a ${size}-byte key, got ${key.length} bytes`);
  }
}

/**
 * Encrypts an SMB2 message (or compound chain) into a TRANSFORM_HEADER
 * packet (MS-SMB2 2.2.41, 3.1.4.3): ProtocolId 0xFD 'S' 'M' 'B', Signature
 * (the AEAD tag, 16 bytes), Nonce (16), OriginalMessageSize (4),
 * Reserved (2), Flags 0x0001 (2), SessionId (8), then the ciphertext. The
 * AAD is the 32 header bytes from Nonce on.
 *
 * The nonce must never repeat under one key. Left out, it is random
 * (11 bytes for CCM, 12 for GCM, rest of the field zero). Given, it is those
 * 11 or 12 bytes, or the whole 16-byte field as it is (to reproduce a
 * captured packet; only its first 11 or 12 bytes feed the cipher).
 *
 * @param key the encryption key (client to server): 16 bytes, 32 for AES-256
 * @param sessionId the SessionId of the session whose key this is
 * @param message the SMB2 message(s) to encrypt
 * @param nonce optional, see above
 * @returns the TRANSFORM_HEADER followed by the ciphertext
 * @throws {RangeError} for a wrong key or nonce length or a SessionId outside 0..2^64-1
 *
 * @example Seal and unseal
 * ```ts
 * import assert from "node:assert/strict";
 * import { seal, unseal } from "./crypto.ts";
 * const key = new Uint8Array(16).fill(5);
 * const message = new TextEncoder().encode("an SMB2 message");
 * const packet = seal("aes-128-gcm", key, 0x100000000025n, message);
 * assert.deepEqual(Array.from(packet.subarray(0, 4)), [0xfd, 0x53, 0x4d, 0x42]);
 * assert.deepEqual(unseal("aes-128-gcm", key, packet), { sessionId: 0x100000000025n, message });
 * ```
 */
export function seal(
  cipher: Cipher,
  key: Uint8Array,
  sessionId: bigint,
  message: Uint8Array,
  nonce?: Uint8Array,
): Uint8Array {
  checkCipherKey(cipher, key);
  const n = nonceLength(cipher);
  if (nonce !== undefined && nonce.length !== n && nonce.length !== 16) {
    throw new RangeError(
      `Cipher "${cipher}" needs a ${n}-byte or 16-byte nonce, got ${nonce.length} bytes`,
    );
  }
  if (sessionId < 0n || sessionId >= 1n << 64n) {
    throw new RangeError(`SessionId must fit in 64 bits, got ${sessionId}`);
  }
  if (message.length > 0xffffffff) {
    throw new RangeError(`SMB2 message too long to encrypt: ${message.length} bytes`);
  }
  const packet = new Uint8Array(TRANSFORM_HEADER_SIZE + message.length);
  const view = new DataView(packet.buffer);
  packet.set(TRANSFORM_MAGIC);
  packet.set(nonce ?? randomBytes(n), T_NONCE_AT);
  view.setUint32(T_SIZE_AT, message.length, true);
  view.setUint16(T_FLAGS_AT, TRANSFORM_ENCRYPTED, true);
  view.setBigUint64(T_SESSION_AT, sessionId, true);
  const aad = packet.subarray(T_NONCE_AT, TRANSFORM_HEADER_SIZE);
  const cipherNonce = packet.subarray(T_NONCE_AT, T_NONCE_AT + n);
  const sealed = encrypt(cipher, key, cipherNonce, message, aad);
  packet.set(sealed.tag, T_SIGNATURE_AT);
  packet.set(sealed.ciphertext, TRANSFORM_HEADER_SIZE);
  return packet;
}

/**
 * Checks and decrypts a TRANSFORM_HEADER packet made by {@linkcode seal} or a
 * server. `undefined` when it is malformed (too short, wrong ProtocolId,
 * Flags not 0x0001, OriginalMessageSize not the rest of the packet) or the
 * tag fails: any changed bit in header, nonce, size, SessionId or
 * ciphertext. The caller checks that the SessionId is the one it expects.
 *
 * @param key the decryption key (server to client)
 * @param packet the whole transform packet as received
 * @returns the SessionId from the header and the decrypted message, or `undefined`
 * @throws {RangeError} only for a wrong key length
 *
 * @example A flipped ciphertext bit is refused
 * ```ts
 * import assert from "node:assert/strict";
 * import { seal, unseal } from "./crypto.ts";
 * const key = new Uint8Array(16).fill(5);
 * const packet = seal("aes-128-ccm", key, 1n, new Uint8Array(64));
 * packet[60]! ^= 0x80;
 * assert.equal(unseal("aes-128-ccm", key, packet), undefined);
 * ```
 */
export function unseal(
  cipher: Cipher,
  key: Uint8Array,
  packet: Uint8Array,
): { sessionId: bigint; message: Uint8Array } | undefined {
  checkCipherKey(cipher, key);
  if (packet.length <= TRANSFORM_HEADER_SIZE) return undefined;
  if (!TRANSFORM_MAGIC.every((b, i) => packet[i] === b)) return undefined;
  const view = new DataView(packet.buffer, packet.byteOffset, packet.byteLength);
  if (view.getUint16(T_FLAGS_AT, true) !== TRANSFORM_ENCRYPTED) return undefined;
  if (view.getUint32(T_SIZE_AT, true) !== packet.length - TRANSFORM_HEADER_SIZE) return undefined;
  const n = nonceLength(cipher);
  const nonce = packet.subarray(T_NONCE_AT, T_NONCE_AT + n);
  const aad = packet.subarray(T_NONCE_AT, TRANSFORM_HEADER_SIZE);
  const tag = packet.subarray(T_SIGNATURE_AT, T_SIGNATURE_AT + 16);
  const ciphertext = packet.subarray(TRANSFORM_HEADER_SIZE);
  const message = cipher.endsWith("ccm")
    ? aesCcmDecrypt(key, nonce, ciphertext, aad, tag)
    : aesGcmDecrypt(key, nonce, ciphertext, aad, tag);
  if (message === undefined) return undefined;
  return { sessionId: view.getBigUint64(T_SESSION_AT, true), message };
}

function encrypt(
  cipher: Cipher,
  key: Uint8Array,
  nonce: Uint8Array,
  message: Uint8Array,
  aad: Uint8Array,
): Sealed {
  return cipher.endsWith("ccm")
    ? aesCcmEncrypt(key, nonce, message, aad)
    : aesGcmEncrypt(key, nonce, message, aad);
}
