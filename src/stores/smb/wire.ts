/**
 * SMB2/SMB3 on the wire, pure: the constants, the 64-byte header, compound
 * chains, NetBIOS frames, the request bodies the store sends and the answers
 * it reads (MS-SMB2 section 2). No I/O and no state: every function takes
 * bytes or values and returns bytes or values, so this layer is tested with
 * byte vectors alone (`tests/smb_wire_test.ts`).
 *
 * Offsets inside a body (a name's, a buffer's) count from the start of the
 * SMB2 header, as the protocol has them.
 *
 * @module
 */

import { concatBytes } from "../../_bytes.ts";

// ---------------------------------------------------------------------------
// Constants

/** 0xFE 'S' 'M' 'B': an SMB2 header. */
export const PROTOCOL_ID = 0xfe534d42;
/** 0xFD 'S' 'M' 'B': an SMB3 TRANSFORM_HEADER (an encrypted message). */
export const TRANSFORM_ID = 0xfd534d42;
/** Size of the SMB2 sync header. */
export const HEADER_SIZE = 64;

/** SMB2 commands. */
export const Command = {
  NEGOTIATE: 0x00,
  SESSION_SETUP: 0x01,
  LOGOFF: 0x02,
  TREE_CONNECT: 0x03,
  TREE_DISCONNECT: 0x04,
  CREATE: 0x05,
  CLOSE: 0x06,
  READ: 0x08,
  WRITE: 0x09,
  IOCTL: 0x0b,
  CANCEL: 0x0c,
  ECHO: 0x0d,
  QUERY_DIRECTORY: 0x0e,
  CHANGE_NOTIFY: 0x0f,
  SET_INFO: 0x11,
  OPLOCK_BREAK: 0x12,
} as const;

/** Flags of the SMB2 header. */
export const HeaderFlag = {
  SERVER_TO_REDIR: 0x1,
  ASYNC_COMMAND: 0x2,
  RELATED_OPERATIONS: 0x4,
  SIGNED: 0x8,
} as const;

/** Dialects, oldest first; the client offers all of them. */
export const Dialect = {
  SMB202: 0x0202,
  SMB210: 0x0210,
  SMB300: 0x0300,
  SMB302: 0x0302,
  SMB311: 0x0311,
} as const;

/** Every dialect this client speaks, in the order it offers them. */
export const DIALECTS: readonly number[] = [
  Dialect.SMB202,
  Dialect.SMB210,
  Dialect.SMB300,
  Dialect.SMB302,
  Dialect.SMB311,
];

/**
 * A dialect as people write it: `0x0311` is "3.1.1".
 * @param dialect the DialectRevision
 * @returns "2.0.2", "2.1", "3.0", "3.0.2", "3.1.1", or the number in hex
 */
export function dialectName(dialect: number): string {
  const names: Record<number, string> = {
    [Dialect.SMB202]: "2.0.2",
    [Dialect.SMB210]: "2.1",
    [Dialect.SMB300]: "3.0",
    [Dialect.SMB302]: "3.0.2",
    [Dialect.SMB311]: "3.1.1",
  };
  return names[dialect] ?? `0x${dialect.toString(16).padStart(4, "0")}`;
}

/** SecurityMode bits of NEGOTIATE and SESSION_SETUP. */
export const SecurityMode = {
  SIGNING_ENABLED: 0x1,
  SIGNING_REQUIRED: 0x2,
} as const;

/** Global capabilities of NEGOTIATE. */
export const Capability = {
  DFS: 0x01,
  LEASING: 0x02,
  LARGE_MTU: 0x04,
  ENCRYPTION: 0x40,
} as const;

/** SessionFlags of the SESSION_SETUP answer. */
export const SessionFlag = {
  IS_GUEST: 0x1,
  IS_NULL: 0x2,
  ENCRYPT_DATA: 0x4,
} as const;

/** ShareFlags of the TREE_CONNECT answer that matter here. */
export const ShareFlag = {
  ENCRYPT_DATA: 0x8000,
} as const;

/** Negotiate context types (SMB 3.1.1). */
export const ContextType = {
  PREAUTH_INTEGRITY: 0x0001,
  ENCRYPTION: 0x0002,
  SIGNING: 0x0008,
} as const;

/** Preauth integrity hash: SHA-512, the only one defined. */
export const HASH_SHA512 = 0x0001;

/** Cipher ids of the encryption context. */
export const CipherId = {
  AES_128_CCM: 0x0001,
  AES_128_GCM: 0x0002,
  AES_256_CCM: 0x0003,
  AES_256_GCM: 0x0004,
} as const;

/** Signing algorithm ids of the signing context. */
export const SigningId = {
  HMAC_SHA256: 0x0000,
  AES_CMAC: 0x0001,
  AES_GMAC: 0x0002,
} as const;

/** FSCTL_VALIDATE_NEGOTIATE_INFO, for SMB 3.0 and 3.0.2. */
export const FSCTL_VALIDATE_NEGOTIATE_INFO = 0x00140204;
/** IOCTL Flags: the control code is an FSCTL. */
export const IOCTL_IS_FSCTL = 0x1;

/** NTSTATUS values the client acts on. */
export const Status = {
  SUCCESS: 0x00000000,
  PENDING: 0x00000103,
  NOTIFY_CLEANUP: 0x0000010b,
  NOTIFY_ENUM_DIR: 0x0000010c,
  NO_MORE_FILES: 0x80000006,
  INVALID_PARAMETER: 0xc000000d,
  NO_SUCH_FILE: 0xc000000f,
  END_OF_FILE: 0xc0000011,
  MORE_PROCESSING_REQUIRED: 0xc0000016,
  ACCESS_DENIED: 0xc0000022,
  OBJECT_NAME_NOT_FOUND: 0xc0000034,
  OBJECT_NAME_COLLISION: 0xc0000035,
  OBJECT_PATH_NOT_FOUND: 0xc000003a,
  SHARING_VIOLATION: 0xc0000043,
  DELETE_PENDING: 0xc0000056,
  LOGON_FAILURE: 0xc000006d,
  ACCOUNT_RESTRICTION: 0xc000006e,
  PASSWORD_EXPIRED: 0xc0000071,
  ACCOUNT_DISABLED: 0xc0000072,
  MEDIA_WRITE_PROTECTED: 0xc00000a2,
  FILE_IS_A_DIRECTORY: 0xc00000ba,
  NOT_SUPPORTED: 0xc00000bb,
  NETWORK_NAME_DELETED: 0xc00000c9,
  BAD_NETWORK_NAME: 0xc00000cc,
  REQUEST_NOT_ACCEPTED: 0xc00000d0,
  NOT_A_DIRECTORY: 0xc0000103,
  CANCELLED: 0xc0000120,
  FILE_CLOSED: 0xc0000128,
  USER_SESSION_DELETED: 0xc0000203,
  ACCOUNT_LOCKED_OUT: 0xc0000234,
  NETWORK_SESSION_EXPIRED: 0xc000035c,
} as const;

const STATUS_NAMES: ReadonlyMap<number, string> = new Map([
  ...Object.entries(Status).map(([name, value]) => [value, `STATUS_${name}`] as const),
  [0x80000005, "STATUS_BUFFER_OVERFLOW"],
  [0xc0000001, "STATUS_UNSUCCESSFUL"],
  [0xc0000002, "STATUS_NOT_IMPLEMENTED"],
  [0xc0000008, "STATUS_INVALID_HANDLE"],
  [0xc0000010, "STATUS_INVALID_DEVICE_REQUEST"],
  [0xc0000033, "STATUS_OBJECT_NAME_INVALID"],
  [0xc000003b, "STATUS_OBJECT_PATH_SYNTAX_BAD"],
  [0xc000005f, "STATUS_NO_SUCH_LOGON_SESSION"],
  [0xc0000061, "STATUS_PRIVILEGE_NOT_HELD"],
  [0xc000006a, "STATUS_WRONG_PASSWORD"],
  [0xc000006f, "STATUS_INVALID_LOGON_HOURS"],
  [0xc0000070, "STATUS_INVALID_WORKSTATION"],
  [0xc000007f, "STATUS_DISK_FULL"],
  [0xc000009a, "STATUS_INSUFFICIENT_RESOURCES"],
  [0xc00000b5, "STATUS_IO_TIMEOUT"],
  [0xc00000cb, "STATUS_BAD_DEVICE_TYPE"],
  [0xc0000101, "STATUS_DIRECTORY_NOT_EMPTY"],
  [0xc000015b, "STATUS_LOGON_TYPE_NOT_GRANTED"],
  [0xc0000193, "STATUS_ACCOUNT_EXPIRED"],
  [0xc0000224, "STATUS_PASSWORD_MUST_CHANGE"],
  [0xc0000225, "STATUS_NOT_FOUND"],
  [0xc00002f9, "STATUS_PKINIT_NAME_MISMATCH"],
  [0xc0000388, "STATUS_DOWNGRADE_DETECTED"],
]);

/**
 * The name of an NTSTATUS, or the number in hex for one not listed here.
 *
 * @param status the NTSTATUS
 * @returns e.g. "STATUS_ACCESS_DENIED"
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Status, statusName } from "./wire.ts";
 * assert.equal(statusName(Status.ACCESS_DENIED), "STATUS_ACCESS_DENIED");
 * assert.equal(statusName(0xc0ffee00), "0xc0ffee00");
 * ```
 */
export function statusName(status: number): string {
  return STATUS_NAMES.get(status >>> 0) ?? `0x${(status >>> 0).toString(16).padStart(8, "0")}`;
}

// ---------------------------------------------------------------------------
// Little helpers

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** UTF-16LE, the encoding of every name in SMB2. */
export function utf16(text: string): Uint8Array {
  const out = new Uint8Array(text.length * 2);
  const v = view(out);
  for (let i = 0; i < text.length; i++) v.setUint16(i * 2, text.charCodeAt(i), true);
  return out;
}

/** One decoder for every name: making one per name costs more than decoding it. */
const utf16Decoder = new TextDecoder("utf-16le");

function fromUtf16(bytes: Uint8Array): string {
  return utf16Decoder.decode(bytes);
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

/** A message too short or with offsets out of bounds: the server sent what this client cannot read. */
export class WireError extends Error {
  /**
   * @param message what is wrong with the bytes
   */
  constructor(message: string) {
    super(message);
    this.name = "WireError";
  }
}

function need(bytes: Uint8Array, length: number, what: string): void {
  if (bytes.length < length) throw new WireError(`${what} is too short (${bytes.length} bytes)`);
}

/** The bytes at `offset` (from the header's start) of `length`, checked to lie inside `message`. */
function slice(message: Uint8Array, offset: number, length: number, what: string): Uint8Array {
  if (length === 0) return new Uint8Array();
  if (offset < HEADER_SIZE || offset + length > message.length) {
    throw new WireError(`${what} lies outside the message`);
  }
  return message.subarray(offset, offset + length);
}

// ---------------------------------------------------------------------------
// Header

/** The fields of the 64-byte SMB2 header (sync form; the async id is not used). */
export interface Header {
  /** Command code. */
  command: number;
  /** NTSTATUS in answers; 0 in requests (ChannelSequence). */
  status: number;
  /** Header flags. */
  flags: number;
  /** Offset of the next message of a compound, 0 for the last. */
  nextCommand: number;
  /** CreditCharge. */
  creditCharge: number;
  /** Credits asked for (request) or granted (answer). */
  credits: number;
  /** MessageId; all ones for an unsolicited oplock break. */
  messageId: bigint;
  /** TreeId (sync header). */
  treeId: number;
  /** SessionId. */
  sessionId: bigint;
  /** The 16-byte signature. */
  signature: Uint8Array;
}

/**
 * Writes a header into the first 64 bytes of `message`; the signature is
 * left zero (it is computed over the finished message).
 */
export function writeHeader(
  message: Uint8Array,
  header: Omit<Header, "signature" | "status"> & { status?: number },
): void {
  need(message, HEADER_SIZE, "message");
  const v = view(message);
  v.setUint32(0, PROTOCOL_ID);
  v.setUint16(4, HEADER_SIZE, true);
  v.setUint16(6, header.creditCharge, true);
  v.setUint32(8, header.status ?? 0, true);
  v.setUint16(12, header.command, true);
  v.setUint16(14, header.credits, true);
  v.setUint32(16, header.flags, true);
  v.setUint32(20, header.nextCommand, true);
  v.setBigUint64(24, header.messageId, true);
  v.setUint32(32, 0, true); // Reserved (ProcessId)
  v.setUint32(36, header.treeId, true);
  v.setBigUint64(40, header.sessionId, true);
  message.fill(0, 48, 64);
}

/** The AsyncId of an answer sent with SMB2_FLAGS_ASYNC_COMMAND (0n without the flag). */
export function asyncIdOf(message: Uint8Array): bigint {
  need(message, HEADER_SIZE, "SMB2 message");
  const v = view(message);
  return v.getUint32(16, true) & HeaderFlag.ASYNC_COMMAND ? v.getBigUint64(32, true) : 0n;
}

/**
 * The header of an SMB2 CANCEL of the request `messageId` (MS-SMB2
 * 3.2.4.24): async when the server named the request's AsyncId in its
 * interim answer, else sync. It takes no credit and no message id of its own.
 */
export function encodeCancel(
  messageId: bigint,
  asyncId: bigint,
  sessionId: bigint,
  treeId: number,
): Uint8Array {
  const message = new Uint8Array(HEADER_SIZE + 4);
  writeHeader(message, {
    command: Command.CANCEL,
    flags: asyncId === 0n ? 0 : HeaderFlag.ASYNC_COMMAND,
    nextCommand: 0,
    creditCharge: 0,
    credits: 0,
    messageId,
    treeId,
    sessionId,
  });
  const v = view(message);
  if (asyncId !== 0n) v.setBigUint64(32, asyncId, true); // AsyncId in place of ProcessId and TreeId
  v.setUint16(HEADER_SIZE, 4, true); // StructureSize
  return message;
}

/**
 * Reads the header of a message.
 * @throws {WireError} when it is no SMB2 header
 */
export function readHeader(message: Uint8Array): Header {
  need(message, HEADER_SIZE, "SMB2 message");
  const v = view(message);
  if (v.getUint32(0) !== PROTOCOL_ID) throw new WireError("not an SMB2 message");
  return {
    creditCharge: v.getUint16(6, true),
    status: v.getUint32(8, true),
    command: v.getUint16(12, true),
    credits: v.getUint16(14, true),
    flags: v.getUint32(16, true),
    nextCommand: v.getUint32(20, true),
    messageId: v.getBigUint64(24, true),
    treeId: v.getUint32(36, true),
    sessionId: v.getBigUint64(40, true),
    signature: message.subarray(48, 64),
  };
}

/** One request: its header fields (less what a compound sets) and its body. */
export interface MessageParts {
  /** Header fields. */
  header: Omit<Header, "signature" | "status" | "nextCommand">;
  /** The body after the header. */
  body: Uint8Array;
}

/**
 * Lays out a compound request (MS-SMB2 3.2.4.1.4): each message but the last
 * padded to 8 bytes, NextCommand pointing at the next. A single message is a
 * compound of one. The signatures are left zero.
 *
 * @param messages headers and bodies in order
 * @returns the SMB2 payload of one frame
 */
export function encodeCompound(messages: readonly MessageParts[]): Uint8Array {
  const sizes = messages.map((m, i) => {
    const size = HEADER_SIZE + m.body.length;
    return i < messages.length - 1 ? align8(size) : size;
  });
  const out = new Uint8Array(sizes.reduce((a, b) => a + b, 0));
  let at = 0;
  messages.forEach((m, i) => {
    const next = i < messages.length - 1 ? sizes[i]! : 0;
    const message = out.subarray(at, at + sizes[i]!);
    writeHeader(message, { ...m.header, nextCommand: next });
    message.set(m.body, HEADER_SIZE);
    at += sizes[i]!;
  });
  return out;
}

/**
 * The messages of a compound (or the one message of a frame): views into
 * `payload`, each as long as NextCommand says (padding included, as signed).
 * @throws {WireError} when a message is no SMB2 message or NextCommand is bad
 */
export function splitCompound(payload: Uint8Array): Uint8Array[] {
  const messages: Uint8Array[] = [];
  for (let offset = 0;;) {
    const header = readHeader(payload.subarray(offset));
    const next = header.nextCommand;
    const end = next > 0 ? offset + next : payload.length;
    if (end > payload.length || end < offset + HEADER_SIZE) {
      throw new WireError("bad NextCommand in a compound answer");
    }
    messages.push(payload.subarray(offset, end));
    if (next === 0) return messages;
    offset = end;
  }
}

/** The 4-byte Direct TCP transport header and the payload, in one buffer. */
export function frame(payload: Uint8Array): Uint8Array {
  if (payload.length > 0xffffff) {
    throw new RangeError(`SMB2 request of ${payload.length} bytes is too large`);
  }
  const out = new Uint8Array(4 + payload.length);
  view(out).setUint32(0, payload.length);
  out.set(payload, 4);
  return out;
}

/**
 * Length of the frame at the start of `bytes`, or undefined when its 4-byte
 * header has not arrived yet.
 */
export function frameLength(bytes: Uint8Array): number | undefined {
  if (bytes.length < 4) return undefined;
  return view(bytes).getUint32(0) & 0xffffff;
}

/** Whether a payload is an encrypted message (TRANSFORM_HEADER). */
export function isTransform(payload: Uint8Array): boolean {
  return payload.length >= 4 && view(payload).getUint32(0) === TRANSFORM_ID;
}

// ---------------------------------------------------------------------------
// NEGOTIATE

/** One negotiate context: its type and data. */
export interface NegotiateContext {
  /** ContextType. */
  type: number;
  /** Data. */
  data: Uint8Array;
}

/** SMB2_PREAUTH_INTEGRITY_CAPABILITIES: SHA-512 with a salt. */
export function preauthContext(salt: Uint8Array): NegotiateContext {
  const data = new Uint8Array(6 + salt.length);
  const v = view(data);
  v.setUint16(0, 1, true); // HashAlgorithmCount
  v.setUint16(2, salt.length, true);
  v.setUint16(4, HASH_SHA512, true);
  data.set(salt, 6);
  return { type: ContextType.PREAUTH_INTEGRITY, data };
}

/** A context holding a count and a list of 16-bit ids (encryption and signing). */
function idListContext(type: number, ids: readonly number[]): NegotiateContext {
  const data = new Uint8Array(2 + ids.length * 2);
  const v = view(data);
  v.setUint16(0, ids.length, true);
  ids.forEach((id, i) => v.setUint16(2 + i * 2, id, true));
  return { type, data };
}

/** SMB2_ENCRYPTION_CAPABILITIES: the ciphers, most wanted first. */
export function encryptionContext(ciphers: readonly number[]): NegotiateContext {
  return idListContext(ContextType.ENCRYPTION, ciphers);
}

/** SMB2_SIGNING_CAPABILITIES: the signing algorithms, most wanted first. */
export function signingContext(algorithms: readonly number[]): NegotiateContext {
  return idListContext(ContextType.SIGNING, algorithms);
}

/** What a NEGOTIATE request offers. */
export interface NegotiateRequest {
  /** Dialects offered. */
  dialects: readonly number[];
  /** SecurityMode bits. */
  securityMode: number;
  /** Global capabilities. */
  capabilities: number;
  /** ClientGuid (16 bytes). */
  clientGuid: Uint8Array;
  /** Negotiate contexts; sent only when 3.1.1 is offered. */
  contexts?: readonly NegotiateContext[];
}

/**
 * The body of a NEGOTIATE request; with 3.1.1 offered, its negotiate
 * contexts follow the dialects, each 8-byte aligned.
 */
export function encodeNegotiate(request: NegotiateRequest): Uint8Array {
  const fixed = 36;
  const dialectsEnd = fixed + request.dialects.length * 2;
  const withContexts = request.dialects.includes(Dialect.SMB311) &&
    (request.contexts?.length ?? 0) > 0;
  const contexts = withContexts ? request.contexts! : [];
  // Contexts start 8-byte aligned counted from the header.
  const contextsAt = align8(HEADER_SIZE + dialectsEnd) - HEADER_SIZE;
  const parts: Uint8Array[] = [];
  let length = withContexts ? contextsAt : dialectsEnd;
  contexts.forEach((context, i) => {
    const part = new Uint8Array(8 + context.data.length);
    const v = view(part);
    v.setUint16(0, context.type, true);
    v.setUint16(2, context.data.length, true);
    part.set(context.data, 8);
    parts.push(part);
    length += part.length;
    if (i < contexts.length - 1) {
      const padded = align8(length);
      if (padded > length) parts.push(new Uint8Array(padded - length));
      length = padded;
    }
  });
  const body = new Uint8Array(length);
  const v = view(body);
  v.setUint16(0, 36, true); // StructureSize
  v.setUint16(2, request.dialects.length, true);
  v.setUint16(4, request.securityMode, true);
  v.setUint32(8, request.capabilities, true);
  if (request.clientGuid.length !== 16) throw new RangeError("ClientGuid must be 16 bytes");
  body.set(request.clientGuid, 12);
  if (withContexts) {
    v.setUint32(28, HEADER_SIZE + contextsAt, true); // NegotiateContextOffset
    v.setUint16(32, contexts.length, true);
  } // else ClientStartTime: 0
  request.dialects.forEach((dialect, i) => v.setUint16(fixed + i * 2, dialect, true));
  body.set(concatBytes(parts), withContexts ? contextsAt : dialectsEnd);
  return body;
}

/** What a NEGOTIATE answer says. */
export interface NegotiateResponse {
  /** SecurityMode bits of the server. */
  securityMode: number;
  /** The dialect chosen. */
  dialect: number;
  /** ServerGuid. */
  serverGuid: Uint8Array;
  /** Global capabilities of the server. */
  capabilities: number;
  /** Largest READ, WRITE and transaction the server takes. */
  maxReadSize: number;
  /** Largest WRITE. */
  maxWriteSize: number;
  /** Largest transaction. */
  maxTransactSize: number;
  /** The server's clock, FILETIME (100 ns since 1601). */
  systemTime: bigint;
  /** The security token (SPNEGO hints; unused). */
  securityBuffer: Uint8Array;
  /** Negotiate contexts (3.1.1). */
  contexts: NegotiateContext[];
}

/**
 * Reads a NEGOTIATE answer.
 * @param message the whole message, header included
 * @throws {WireError} when it is short or its offsets are bad
 */
export function decodeNegotiate(message: Uint8Array): NegotiateResponse {
  need(message, HEADER_SIZE + 64, "NEGOTIATE answer");
  const v = view(message);
  const b = HEADER_SIZE;
  const dialect = v.getUint16(b + 4, true);
  const contextCount = v.getUint16(b + 6, true);
  const securityBuffer = slice(
    message,
    v.getUint16(b + 56, true),
    v.getUint16(b + 58, true),
    "NEGOTIATE security buffer",
  );
  const contexts: NegotiateContext[] = [];
  if (dialect === Dialect.SMB311 && contextCount > 0) {
    let at = v.getUint32(b + 60, true);
    for (let i = 0; i < contextCount; i++) {
      at = align8(at);
      const head = slice(message, at, 8, "negotiate context");
      const hv = view(head);
      const length = hv.getUint16(2, true);
      contexts.push({
        type: hv.getUint16(0, true),
        data: slice(message, at + 8, length, "negotiate context data"),
      });
      at += 8 + length;
    }
  }
  return {
    securityMode: v.getUint16(b + 2, true),
    dialect,
    serverGuid: message.subarray(b + 8, b + 24),
    capabilities: v.getUint32(b + 24, true),
    maxTransactSize: v.getUint32(b + 28, true),
    maxReadSize: v.getUint32(b + 32, true),
    maxWriteSize: v.getUint32(b + 36, true),
    systemTime: v.getBigUint64(b + 40, true),
    securityBuffer,
    contexts,
  };
}

/**
 * The ids a context of the encryption or signing kind holds (the server
 * names the one it chose).
 * @throws {WireError} when the context is short
 */
export function contextIds(context: NegotiateContext): number[] {
  need(context.data, 2, "negotiate context");
  const v = view(context.data);
  const count = v.getUint16(0, true);
  need(context.data, 2 + count * 2, "negotiate context");
  return Array.from({ length: count }, (_, i) => v.getUint16(2 + i * 2, true));
}

/** The hash algorithms and salt of a preauth integrity context. */
export function preauthIds(context: NegotiateContext): { hashes: number[]; salt: Uint8Array } {
  need(context.data, 4, "preauth integrity context");
  const v = view(context.data);
  const count = v.getUint16(0, true);
  const saltLength = v.getUint16(2, true);
  need(context.data, 4 + count * 2 + saltLength, "preauth integrity context");
  return {
    hashes: Array.from({ length: count }, (_, i) => v.getUint16(4 + i * 2, true)),
    salt: context.data.subarray(4 + count * 2, 4 + count * 2 + saltLength),
  };
}

// ---------------------------------------------------------------------------
// SESSION_SETUP, TREE_CONNECT, IOCTL (validate negotiate)

/** The body of a SESSION_SETUP request carrying a security token (NTLMSSP). */
export function encodeSessionSetup(
  request: { securityMode: number; capabilities: number; token: Uint8Array },
): Uint8Array {
  const body = new Uint8Array(24 + request.token.length);
  const v = view(body);
  v.setUint16(0, 25, true); // StructureSize
  v.setUint8(2, 0); // Flags: no binding
  v.setUint8(3, request.securityMode);
  v.setUint32(4, request.capabilities, true);
  v.setUint16(12, HEADER_SIZE + 24, true); // SecurityBufferOffset
  v.setUint16(14, request.token.length, true);
  body.set(request.token, 24);
  return body;
}

/** What a SESSION_SETUP answer says. */
export interface SessionSetupResponse {
  /** SessionFlags. */
  sessionFlags: number;
  /** The security token (NTLM challenge). */
  token: Uint8Array;
}

/** Reads a SESSION_SETUP answer. */
export function decodeSessionSetup(message: Uint8Array): SessionSetupResponse {
  need(message, HEADER_SIZE + 8, "SESSION_SETUP answer");
  const v = view(message);
  const b = HEADER_SIZE;
  return {
    sessionFlags: v.getUint16(b + 2, true),
    token: slice(message, v.getUint16(b + 4, true), v.getUint16(b + 6, true), "security buffer"),
  };
}

/** The body of a TREE_CONNECT request for `\\server\share`. */
export function encodeTreeConnect(path: string): Uint8Array {
  const name = utf16(path);
  const body = new Uint8Array(8 + name.length);
  const v = view(body);
  v.setUint16(0, 9, true); // StructureSize
  v.setUint16(4, HEADER_SIZE + 8, true); // PathOffset
  v.setUint16(6, name.length, true);
  body.set(name, 8);
  return body;
}

/** What a TREE_CONNECT answer says. */
export interface TreeConnectResponse {
  /** ShareType: 1 disk, 2 pipe, 3 print. */
  shareType: number;
  /** ShareFlags (ENCRYPT_DATA among them). */
  shareFlags: number;
  /** Capabilities of the share. */
  capabilities: number;
  /** MaximalAccess of the user. */
  maximalAccess: number;
}

/** Reads a TREE_CONNECT answer. */
export function decodeTreeConnect(message: Uint8Array): TreeConnectResponse {
  need(message, HEADER_SIZE + 16, "TREE_CONNECT answer");
  const v = view(message);
  const b = HEADER_SIZE;
  return {
    shareType: v.getUint8(b + 2),
    shareFlags: v.getUint32(b + 4, true),
    capabilities: v.getUint32(b + 8, true),
    maximalAccess: v.getUint32(b + 12, true),
  };
}

/** The FileId that names no file (IOCTLs to the server) and, in a compound, "the file just opened". */
export const NO_FILE_ID: Uint8Array = new Uint8Array(16).fill(0xff);

/** The body of an IOCTL request with an FSCTL code and its input. */
export function encodeIoctl(
  request: { ctlCode: number; fileId?: Uint8Array; input: Uint8Array; maxOutput: number },
): Uint8Array {
  const body = new Uint8Array(56 + request.input.length);
  const v = view(body);
  v.setUint16(0, 57, true); // StructureSize
  v.setUint32(4, request.ctlCode, true);
  body.set(request.fileId ?? NO_FILE_ID, 8);
  v.setUint32(24, HEADER_SIZE + 56, true); // InputOffset
  v.setUint32(28, request.input.length, true);
  v.setUint32(32, 0, true); // MaxInputResponse
  v.setUint32(36, HEADER_SIZE + 56, true); // OutputOffset
  v.setUint32(40, 0, true); // OutputCount
  v.setUint32(44, request.maxOutput, true);
  v.setUint32(48, IOCTL_IS_FSCTL, true);
  body.set(request.input, 56);
  return body;
}

/** The output of an IOCTL answer. */
export function decodeIoctl(message: Uint8Array): Uint8Array {
  need(message, HEADER_SIZE + 48, "IOCTL answer");
  const v = view(message);
  const b = HEADER_SIZE;
  return slice(message, v.getUint32(b + 32, true), v.getUint32(b + 36, true), "IOCTL output");
}

/** What VALIDATE_NEGOTIATE_INFO carries both ways. */
export interface ValidateNegotiateInfo {
  /** Capabilities. */
  capabilities: number;
  /** Client (request) or server (answer) GUID. */
  guid: Uint8Array;
  /** SecurityMode. */
  securityMode: number;
  /** Dialects offered (request) or the one chosen (answer). */
  dialects: readonly number[];
}

/** The input of FSCTL_VALIDATE_NEGOTIATE_INFO: what the client sent in NEGOTIATE. */
export function encodeValidateNegotiate(info: ValidateNegotiateInfo): Uint8Array {
  const out = new Uint8Array(24 + info.dialects.length * 2);
  const v = view(out);
  v.setUint32(0, info.capabilities, true);
  out.set(info.guid, 4);
  v.setUint16(20, info.securityMode, true);
  v.setUint16(22, info.dialects.length, true);
  info.dialects.forEach((dialect, i) => v.setUint16(24 + i * 2, dialect, true));
  return out;
}

/** The output of FSCTL_VALIDATE_NEGOTIATE_INFO: what the server answered in NEGOTIATE. */
export function decodeValidateNegotiate(output: Uint8Array): ValidateNegotiateInfo {
  need(output, 24, "VALIDATE_NEGOTIATE_INFO output");
  const v = view(output);
  return {
    capabilities: v.getUint32(0, true),
    guid: output.subarray(4, 20),
    securityMode: v.getUint16(20, true),
    dialects: [v.getUint16(22, true)],
  };
}

// ---------------------------------------------------------------------------
// The file requests

/** Access rights, share modes, dispositions, options and attributes of CREATE. */
export const Access = {
  FILE_READ_DATA: 0x0001, // also FILE_LIST_DIRECTORY
  FILE_WRITE_DATA: 0x0002,
  FILE_READ_ATTRIBUTES: 0x0080,
  DELETE: 0x00010000,
  SYNCHRONIZE: 0x00100000,
} as const;
/** ShareAccess: read, write and delete. */
export const FILE_SHARE_ALL = 0x7;
/** CreateDisposition values. */
export const Disposition = { FILE_OPEN: 1, FILE_CREATE: 2 } as const;
/** CreateOptions values. */
export const CreateOption = {
  FILE_DIRECTORY_FILE: 0x01,
  FILE_NON_DIRECTORY_FILE: 0x40,
  /** Open a reparse point (a link) itself, never what it points to. */
  FILE_OPEN_REPARSE_POINT: 0x00200000,
} as const;
/** FileAttributes values. */
export const Attribute = { DIRECTORY: 0x10, NORMAL: 0x80 } as const;
/** FileInformationClass values of SET_INFO and QUERY_DIRECTORY. */
export const InfoClass = {
  FileDirectoryInformation: 1,
  FileRenameInformation: 10,
  FileLinkInformation: 11,
  FileDispositionInformation: 13,
  FileEndOfFileInformation: 20,
} as const;
/** SET_INFO InfoType: file information. */
const INFO_FILE = 1;

/** Parameters of one CREATE (open). */
export interface CreateRequest {
  /** Share-relative path, `\`-separated; "" for the share's root. */
  path: string;
  /** DesiredAccess. */
  access: number;
  /** CreateDisposition. */
  disposition: number;
  /** CreateOptions. */
  options: number;
  /** FileAttributes of a new file. @default 0 */
  attributes?: number;
  /** ShareAccess: what other opens may do meanwhile. @default FILE_SHARE_ALL */
  share?: number;
}

/** The body of a CREATE request (no create contexts, no oplock). */
export function encodeCreate(request: CreateRequest): Uint8Array {
  const name = utf16(request.path);
  // The buffer holds at least one byte, also for the share's root.
  const body = new Uint8Array(56 + Math.max(name.length, 1));
  const v = view(body);
  v.setUint16(0, 57, true); // StructureSize
  v.setUint32(4, 2, true); // ImpersonationLevel: Impersonation
  v.setUint32(24, request.access, true);
  v.setUint32(28, request.attributes ?? 0, true);
  v.setUint32(32, request.share ?? FILE_SHARE_ALL, true);
  v.setUint32(36, request.disposition, true);
  v.setUint32(40, request.options, true);
  v.setUint16(44, HEADER_SIZE + 56, true); // NameOffset
  v.setUint16(46, name.length, true);
  body.set(name, 56);
  return body;
}

/** What a CREATE answer says about the file opened. */
export interface CreateResponse {
  /** FileId (16 bytes). */
  fileId: Uint8Array;
  /** EndOfFile. */
  size: number;
  /** FileAttributes. */
  attributes: number;
  /** CreationTime (FILETIME) as 16 hex digits: names this incarnation of the file. */
  creation: string;
}

/** Reads a CREATE answer. */
export function decodeCreate(message: Uint8Array): CreateResponse {
  need(message, HEADER_SIZE + 88, "CREATE answer");
  const v = view(message);
  const b = HEADER_SIZE;
  const creation = Array.from(
    message.subarray(b + 8, b + 16),
    (x) => x.toString(16).padStart(2, "0"),
  )
    .join("");
  return {
    creation,
    size: Number(v.getBigUint64(b + 48, true)),
    attributes: v.getUint32(b + 56, true),
    fileId: message.slice(b + 64, b + 80),
  };
}

/** The body of a CLOSE request. */
export function encodeClose(fileId: Uint8Array): Uint8Array {
  const body = new Uint8Array(24);
  view(body).setUint16(0, 24, true);
  body.set(fileId, 8);
  return body;
}

/** The body of an ECHO request (MS-SMB2 2.2.28): StructureSize 4, Reserved. */
export function encodeEcho(): Uint8Array {
  const body = new Uint8Array(4);
  view(body).setUint16(0, 4, true);
  return body;
}

/** The body of a READ request. */
export function encodeRead(fileId: Uint8Array, length: number, offset: number): Uint8Array {
  const body = new Uint8Array(49);
  const v = view(body);
  v.setUint16(0, 49, true); // StructureSize
  v.setUint8(2, 0x50); // Padding: where the data should start
  v.setUint32(4, length, true);
  v.setBigUint64(8, BigInt(offset), true);
  body.set(fileId, 16);
  return body;
}

/** The data of a READ answer. */
export function decodeRead(message: Uint8Array): Uint8Array {
  need(message, HEADER_SIZE + 16, "READ answer");
  const v = view(message);
  const b = HEADER_SIZE;
  return slice(message, v.getUint8(b + 2), v.getUint32(b + 4, true), "READ data");
}

/** The body of a WRITE request of `data` at `offset`. */
export function encodeWrite(fileId: Uint8Array, offset: number, data: Uint8Array): Uint8Array {
  const body = new Uint8Array(48 + Math.max(data.length, 1));
  const v = view(body);
  v.setUint16(0, 49, true); // StructureSize
  v.setUint16(2, HEADER_SIZE + 48, true); // DataOffset
  v.setUint32(4, data.length, true);
  v.setBigUint64(8, BigInt(offset), true);
  body.set(fileId, 16);
  body.set(data, 48);
  return body;
}

/** The body of a SET_INFO request of file information. */
export function encodeSetInfo(
  fileId: Uint8Array,
  infoClass: number,
  buffer: Uint8Array,
): Uint8Array {
  const body = new Uint8Array(32 + buffer.length);
  const v = view(body);
  v.setUint16(0, 33, true); // StructureSize
  v.setUint8(2, INFO_FILE);
  v.setUint8(3, infoClass);
  v.setUint32(4, buffer.length, true);
  v.setUint16(8, HEADER_SIZE + 32, true); // BufferOffset
  body.set(fileId, 16);
  body.set(buffer, 32);
  return body;
}

/**
 * FILE_RENAME_INFORMATION (SMB2 type 2), also the layout of
 * FILE_LINK_INFORMATION: ReplaceIfExists, the new share-relative path.
 */
export function renameInformation(path: string, replaceIfExists: boolean): Uint8Array {
  const name = utf16(path);
  const out = new Uint8Array(20 + name.length);
  const v = view(out);
  v.setUint8(0, replaceIfExists ? 1 : 0);
  v.setUint32(16, name.length, true);
  out.set(name, 20);
  return out;
}

/** FILE_END_OF_FILE_INFORMATION. */
export function endOfFileInformation(size: number): Uint8Array {
  const out = new Uint8Array(8);
  view(out).setBigUint64(0, BigInt(size), true);
  return out;
}

/** FILE_DISPOSITION_INFORMATION: delete on close. */
export const DELETE_ON_CLOSE: Uint8Array = Uint8Array.of(1);

/** The body of a QUERY_DIRECTORY request for every entry (`*`), FileDirectoryInformation. */
export function encodeQueryDirectory(fileId: Uint8Array, outputLength = 0x10000): Uint8Array {
  const pattern = utf16("*");
  const body = new Uint8Array(32 + pattern.length);
  const v = view(body);
  v.setUint16(0, 33, true); // StructureSize
  v.setUint8(2, InfoClass.FileDirectoryInformation);
  body.set(fileId, 8);
  v.setUint16(24, HEADER_SIZE + 32, true); // FileNameOffset
  v.setUint16(26, pattern.length, true);
  v.setUint32(28, outputLength, true);
  body.set(pattern, 32);
  return body;
}

/** CompletionFilter bits of CHANGE_NOTIFY. */
export const NotifyFilter = {
  FILE_NAME: 0x001,
  DIR_NAME: 0x002,
  SIZE: 0x008,
  LAST_WRITE: 0x010,
} as const;

/**
 * The body of a CHANGE_NOTIFY request (MS-SMB2 2.2.35) on an open folder, not
 * its subfolders. With `outputLength` 0 the server names no changes: it
 * answers STATUS_NOTIFY_ENUM_DIR (or success) once anything changed.
 */
export function encodeChangeNotify(
  fileId: Uint8Array,
  filter: number,
  outputLength = 0,
): Uint8Array {
  const body = new Uint8Array(32);
  const v = view(body);
  v.setUint16(0, 32, true); // StructureSize
  v.setUint32(4, outputLength, true);
  body.set(fileId, 8);
  v.setUint32(24, filter, true);
  return body;
}

/** FILE_NOTIFY_INFORMATION Action values (MS-FSCC 2.7.1). */
export const NotifyAction = {
  ADDED: 1,
  REMOVED: 2,
  MODIFIED: 3,
  RENAMED_OLD_NAME: 4,
  RENAMED_NEW_NAME: 5,
} as const;

/** One change a CHANGE_NOTIFY answer names. */
export interface NotifyChange {
  /** {@linkcode NotifyAction} value. */
  action: number;
  /** Name relative to the folder watched. */
  name: string;
}

/**
 * The changes a CHANGE_NOTIFY answer (MS-SMB2 2.2.36) names: its
 * FILE_NOTIFY_INFORMATION entries (MS-FSCC 2.7.1). Empty when the server
 * named none (STATUS_NOTIFY_ENUM_DIR, an empty buffer).
 * @throws {WireError} when an entry lies outside the answer
 */
export function decodeChangeNotify(message: Uint8Array): NotifyChange[] {
  need(message, HEADER_SIZE + 8, "CHANGE_NOTIFY answer");
  const v = view(message);
  const b = HEADER_SIZE;
  const length = v.getUint32(b + 4, true);
  if (length === 0) return [];
  const buffer = slice(message, v.getUint16(b + 2, true), length, "changes");
  const bv = view(buffer);
  const changes: NotifyChange[] = [];
  for (let at = 0; at < buffer.length;) {
    need(buffer.subarray(at), 12, "change entry");
    const next = bv.getUint32(at, true);
    const nameLength = bv.getUint32(at + 8, true);
    const name = buffer.subarray(at + 12, at + 12 + nameLength);
    if (name.length !== nameLength) throw new WireError("change entry name lies outside");
    changes.push({ action: bv.getUint32(at + 4, true), name: fromUtf16(name) });
    if (next === 0) break;
    at += next;
  }
  return changes;
}

/** One entry of a folder listing. */
export interface DirectoryEntry {
  /** File name. */
  name: string;
  /** FileAttributes. */
  attributes: number;
}

/** The entries of a QUERY_DIRECTORY answer (FileDirectoryInformation). */
export function decodeQueryDirectory(message: Uint8Array): DirectoryEntry[] {
  need(message, HEADER_SIZE + 8, "QUERY_DIRECTORY answer");
  const v = view(message);
  const b = HEADER_SIZE;
  const buffer = slice(message, v.getUint16(b + 2, true), v.getUint32(b + 4, true), "listing");
  const bv = view(buffer);
  const entries: DirectoryEntry[] = [];
  for (let at = 0; at < buffer.length;) {
    need(buffer.subarray(at), 64, "directory entry");
    const next = bv.getUint32(at, true);
    const nameLength = bv.getUint32(at + 60, true);
    const name = buffer.subarray(at + 64, at + 64 + nameLength);
    if (name.length !== nameLength) throw new WireError("directory entry name lies outside");
    entries.push({ name: fromUtf16(name), attributes: bv.getUint32(at + 56, true) });
    if (next === 0) break;
    at += next;
  }
  return entries;
}
