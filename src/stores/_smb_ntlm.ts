/**
 * NTLMv2 for `@marsaud/smb2`.
 *
 * smb2 authenticates through the `ntlm` package (`ntlm.encodeType1`,
 * `ntlm.decodeType2`, `ntlm.encodeType3`), which only speaks NTLMv1: it needs
 * DES-ECB, which Deno's `node:crypto` lacks ("Unknown cipher"), and Samba 4.5+
 * and current Windows refuse NTLMv1 anyway. smb2 keeps a reference to the
 * `ntlm` module object and looks the three functions up on every logon, so
 * replacing them on that shared object gives smb2 NTLMv2.
 *
 * The messages themselves come from `@ewsjs/ntlm-client`, a maintained NTLM
 * client (MIT): NTLMv2 and LMv2 responses with HMAC-MD5 from `node:crypto`
 * and the NT hash (MD4) from its `js-md4` dependency. What is ours: binary
 * messages instead of HTTP header strings, Unicode negotiated, NTLMv2 forced
 * (never a silent fall back to NTLMv1), and errors that name the problem.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import ntlm from "npm:ntlm@0.1.3";
import ntlmClient from "npm:@ewsjs/ntlm-client@3.0.1";

/** Workstation name sent in NTLM messages (a NetBIOS name: at most 15 chars). */
const WORKSTATION = "RESOURCELOCKER";
/** NTLMSSP_NEGOTIATE_UNICODE: lets user and domain names hold any character. */
const NEGOTIATE_UNICODE = 0x00000001;
/** NTLMSSP_NEGOTIATE_OEM, dropped once Unicode is negotiated. */
const NEGOTIATE_OEM = 0x00000002;

/** What `decodeType2` hands smb2 and smb2 hands back to `encodeType3`. */
interface Type2Message {
  flags: number;
  encoding: "ascii" | "ucs2";
  version: 1 | 2;
  challenge: Buffer;
  targetName: string;
  targetInfo?: { parsed: Record<string, string>; buffer: Buffer };
}

interface NtlmModule {
  encodeType1(hostname: string, domain?: string): Buffer;
  decodeType2(buffer: Buffer): unknown;
  encodeType3(
    username: string,
    hostname: string,
    domain: string | undefined,
    type2: unknown,
    password: string,
  ): Buffer;
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

const shared = ntlm as unknown as NtlmModule;
const client = ntlmClient as unknown as NtlmClient;

/** Type 1 messages made by this module, to prove smb2 calls our code. */
const ours = new WeakSet<object>();
let installed = false;

function fromHeader(header: string): Buffer {
  return Buffer.from(header.replace(/^NTLM /, ""), "base64");
}

/**
 * The NTLM negotiate message (type 1).
 * @param _hostname what smb2 passes: the server's address, not ours
 * @param _domain the logon domain; the server names its own in type 2
 */
function encodeType1(_hostname: string, _domain?: string): Buffer {
  const message = fromHeader(client.createType1Message(WORKSTATION, ""));
  const flags = message.readUInt32LE(12);
  message.writeUInt32LE((flags | NEGOTIATE_UNICODE) >>> 0, 12);
  ours.add(message);
  return message;
}

/** Parses the server's challenge (type 2); smb2 stores the result as its "nonce". */
function decodeType2(buffer: Buffer): Type2Message {
  if (!Buffer.isBuffer(buffer) || buffer.length < 32) {
    throw new Error("NTLM challenge from the server is missing or too short");
  }
  return client.decodeType2Message(buffer.toString("base64"));
}

/** The NTLMv2 authenticate message (type 3). */
function encodeType3(
  username: string,
  _hostname: string,
  domain: string | undefined,
  type2: unknown,
  password: string,
): Buffer {
  const challenge = type2 as Type2Message;
  if (
    challenge === null || typeof challenge !== "object" ||
    !Buffer.isBuffer(challenge.challenge)
  ) {
    throw new Error("NTLM challenge from the server could not be read");
  }
  if (challenge.targetInfo === undefined) {
    throw new Error(
      "Server offers no NTLMv2 target information; NTLMv1 is not supported",
    );
  }
  const encoding = challenge.flags & NEGOTIATE_UNICODE ? "ucs2" : "ascii";
  const message = fromHeader(
    client.createType3Message(
      { ...challenge, version: 2, encoding },
      username,
      password,
      WORKSTATION,
      domain === undefined || domain === "" ? undefined : domain,
    ),
  );
  if (encoding === "ucs2") {
    // The client copies the server's flags; say plainly which charset we used.
    const flags = message.readUInt32LE(60);
    message.writeUInt32LE(
      ((flags | NEGOTIATE_UNICODE) & ~NEGOTIATE_OEM) >>> 0,
      60,
    );
  }
  return message;
}

/**
 * Replaces NTLMv1 with NTLMv2 on the `ntlm` module object that
 * `@marsaud/smb2` uses. Idempotent.
 *
 * @example Installing NTLMv2
 * ```ts
 * import { installNtlmV2 } from "./_smb_ntlm.ts";
 * installNtlmV2();
 * ```
 */
export function installNtlmV2(): void {
  if (installed) return;
  shared.encodeType1 = encodeType1;
  shared.decodeType2 = decodeType2;
  shared.encodeType3 = encodeType3;
  installed = true;
}

/**
 * Whether a type 1 message was made by {@linkcode installNtlmV2}'s code: smb2
 * builds its session setup through its own `require("ntlm")`, and this tells
 * whether that is the object patched here (one copy of `ntlm` loaded).
 *
 * @param message the security buffer of smb2's first session setup request
 * @returns true when it came from this module
 */
export function isNtlmV2Type1(message: unknown): boolean {
  return typeof message === "object" && message !== null && ours.has(message);
}
