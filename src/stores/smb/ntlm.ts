/**
 * NTLMv2 logon messages for SESSION_SETUP, and the session key they make.
 *
 * The messages come from `@ewsjs/ntlm-client`, a maintained NTLM client
 * (MIT): NTLMv2 and LMv2 responses with HMAC-MD5 from `node:crypto` and the
 * NT hash (MD4) from its `js-md4` dependency. What is ours: binary messages
 * instead of HTTP header strings, Unicode negotiated, NTLMv2 forced (never a
 * fall back to NTLMv1, which needs DES and which Samba 4.5+ and current
 * Windows refuse), errors that name the problem, and the session key.
 *
 * The session key signs and seals the SMB session (`crypto.ts` derives the
 * keys from it). Without NTLMSSP_NEGOTIATE_KEY_EXCH (which would need RC4,
 * which Deno's `node:crypto` lacks) the exported session key is NTLMv2's
 * SessionBaseKey (MS-NLMP 3.3.2): HMAC-MD5 of the NTProofStr (the first 16
 * bytes of the NTLMv2 response) keyed with the NTLMv2 hash, HMAC-MD5 of
 * upper-cased user and domain keyed with the NT hash. Samba and Windows
 * accept a session without key exchange.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createHmac } from "node:crypto";
import ntlmClient from "npm:@ewsjs/ntlm-client@3.0.1";
import ntlmHash from "npm:@ewsjs/ntlm-client@3.0.1/lib/hash.js";

/** Workstation name sent in NTLM messages (a NetBIOS name: at most 15 chars). */
const WORKSTATION = "RESOURCELOCKER";
/** NTLMSSP_NEGOTIATE_UNICODE: lets user and domain names hold any character. */
const NEGOTIATE_UNICODE = 0x00000001;
/** NTLMSSP_NEGOTIATE_OEM, dropped once Unicode is negotiated. */
const NEGOTIATE_OEM = 0x00000002;
/** NTLMSSP_NEGOTIATE_SIGN: the session key will sign (SMB signing). */
const NEGOTIATE_SIGN = 0x00000010;
/** NTLMSSP_NEGOTIATE_KEY_EXCH: never asked for, never granted (needs RC4). */
const NEGOTIATE_KEY_EXCH = 0x40000000;

/** What `decodeType2Message` returns and `createType3Message` takes. */
interface Type2Message {
  flags: number;
  encoding: "ascii" | "ucs2";
  version: 1 | 2;
  challenge: Buffer;
  targetName: string;
  targetInfo?: { parsed: Record<string, string>; buffer: Buffer };
}

interface NtlmClient {
  createType1Message(workstation: string, target: string): string;
  decodeType2Message(message: string): Type2Message;
  createType3Message(
    type2: Type2Message,
    username: string,
    password: string,
    workstation: string,
    target: string | undefined,
  ): string;
}

const client = ntlmClient as unknown as NtlmClient;
const hash = ntlmHash as unknown as { createNTLMHash(password: string): Buffer };

/** Who logs on. */
export interface NtlmCredentials {
  /** User name. */
  username: string;
  /** Password; never shown. */
  password: string;
  /** Logon domain; the server's own (from its challenge) when undefined. */
  domain: string | undefined;
}

/** The AUTHENTICATE message and the session key it makes. */
export interface NtlmAuthentication {
  /** The NTLM AUTHENTICATE message (type 3). */
  message: Uint8Array;
  /** The exported session key (16 bytes): the SMB session's key. */
  sessionKey: Uint8Array;
}

function fromHeader(header: string): Buffer {
  return Buffer.from(header.replace(/^NTLM /, ""), "base64");
}

/**
 * The NTLM NEGOTIATE message (type 1): Unicode, NTLMv2 session security,
 * signing, no key exchange.
 *
 * @returns the message bytes
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { negotiateMessage } from "./ntlm.ts";
 * const message = negotiateMessage();
 * assert.equal(new TextDecoder().decode(message.subarray(0, 7)), "NTLMSSP");
 * assert.equal(message[8], 1);
 * ```
 */
export function negotiateMessage(): Uint8Array {
  const message = fromHeader(client.createType1Message(WORKSTATION, ""));
  const flags = message.readUInt32LE(12);
  message.writeUInt32LE(
    ((flags | NEGOTIATE_UNICODE | NEGOTIATE_SIGN) & ~NEGOTIATE_KEY_EXCH) >>> 0,
    12,
  );
  return new Uint8Array(message);
}

/**
 * The NTLMv2 AUTHENTICATE message (type 3) answering the server's
 * CHALLENGE (type 2), and the session key.
 *
 * @param challenge the server's CHALLENGE message
 * @param credentials who logs on
 * @returns the message and the session key
 * @throws {Error} when the challenge cannot be read or offers no NTLMv2
 */
export function authenticateMessage(
  challenge: Uint8Array,
  credentials: NtlmCredentials,
): NtlmAuthentication {
  if (challenge.length < 32) {
    throw new Error("NTLM challenge from the server is missing or too short");
  }
  const type2 = client.decodeType2Message(Buffer.from(challenge).toString("base64"));
  if (type2.targetInfo === undefined) {
    throw new Error("Server offers no NTLMv2 target information; NTLMv1 is not supported");
  }
  const encoding = type2.flags & NEGOTIATE_UNICODE ? "ucs2" : "ascii";
  const domain = credentials.domain === undefined || credentials.domain === ""
    ? undefined
    : credentials.domain;
  const message = fromHeader(
    client.createType3Message(
      // The client copies the server's flags; no key exchange (there is no
      // encrypted random session key in the message).
      { ...type2, flags: (type2.flags & ~NEGOTIATE_KEY_EXCH) >>> 0, version: 2, encoding },
      credentials.username,
      credentials.password,
      WORKSTATION,
      domain,
    ),
  );
  if (encoding === "ucs2") {
    // Say plainly which charset we used.
    const flags = message.readUInt32LE(60);
    message.writeUInt32LE(((flags | NEGOTIATE_UNICODE) & ~NEGOTIATE_OEM) >>> 0, 60);
  }
  // The NTLMv2 response's first 16 bytes are its NTProofStr.
  const ntLength = message.readUInt16LE(20);
  const ntOffset = message.readUInt32LE(24);
  if (ntLength < 16 || ntOffset + ntLength > message.length) {
    throw new Error("NTLMv2 response could not be made");
  }
  const ntProof = message.subarray(ntOffset, ntOffset + 16);
  // The same user and domain the client's NTLMv2 hash used.
  const sessionKey = sessionBaseKey(
    credentials.password,
    credentials.username,
    domain ?? type2.targetName,
    ntProof,
  );
  return { message: new Uint8Array(message), sessionKey };
}

/**
 * NTLMv2's SessionBaseKey (MS-NLMP 3.3.2): HMAC-MD5 of the NTProofStr keyed
 * with NTOWFv2, itself HMAC-MD5 of the upper-cased user name and the domain
 * (UTF-16LE) keyed with the NT hash (MD4 of the UTF-16LE password). Without
 * key exchange it is the session key.
 *
 * @param password the password
 * @param username the user name as sent
 * @param domain the domain the response was computed for
 * @param ntProofStr the first 16 bytes of the NTLMv2 response
 * @returns the 16-byte key
 *
 * @example MS-NLMP 4.2.4 (NTLMv2 authentication)
 * ```ts
 * import assert from "node:assert/strict";
 * import { sessionBaseKey } from "./ntlm.ts";
 * const hex = (s: string) => Uint8Array.from(s.match(/../g)!, (b) => parseInt(b, 16));
 * const key = sessionBaseKey("Password", "User", "Domain", hex("68cd0ab851e51c96aabc927bebef6a1c"));
 * assert.deepEqual(key, hex("8de40ccadbc14a82f15cb0ad0de95ca3"));
 * ```
 */
export function sessionBaseKey(
  password: string,
  username: string,
  domain: string,
  ntProofStr: Uint8Array,
): Uint8Array {
  const ntowfV2 = createHmac("md5", hash.createNTLMHash(password))
    .update(Buffer.from(username.toUpperCase() + domain, "ucs2"))
    .digest();
  return new Uint8Array(createHmac("md5", ntowfV2).update(ntProofStr).digest());
}
