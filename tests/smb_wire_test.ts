/**
 * The pure SMB2 wire layer (`src/stores/smb/wire.ts`) against byte
 * vectors, no server: requests checked byte for byte against MS-SMB2's
 * layouts (2.2.3 NEGOTIATE with its contexts, 2.2.13 CREATE, 2.2.31 IOCTL
 * VALIDATE_NEGOTIATE_INFO), a NEGOTIATE answer captured from Samba 4.17,
 * compounds and frames, and answers whose offsets lie outside the message.
 *
 * @module
 */

import {
  Command,
  contextIds,
  ContextType,
  decodeChangeNotify,
  decodeCreate,
  decodeNegotiate,
  decodeQueryDirectory,
  decodeRead,
  decodeSessionSetup,
  decodeTreeConnect,
  decodeValidateNegotiate,
  DIALECTS,
  encodeCompound,
  encodeCreate,
  encodeNegotiate,
  encodeTreeConnect,
  encodeValidateNegotiate,
  encryptionContext,
  frame,
  frameLength,
  HeaderFlag,
  isTransform,
  preauthContext,
  preauthIds,
  readHeader,
  renameInformation,
  signingContext,
  splitCompound,
  Status,
  statusName,
  WireError,
  writeHeader,
} from "../src/stores/smb/wire.ts";
import { assertEquals, assertOk, assertThrows } from "./_assert.ts";

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function bytes(text: string): Uint8Array {
  return Uint8Array.from(text.match(/../g) ?? [], (b) => parseInt(b, 16));
}

/** An answer: a 64-byte header (SERVER_TO_REDIR, the command) and a body. */
function answer(command: number, body: Uint8Array, status = 0): Uint8Array {
  const message = new Uint8Array(64 + body.length);
  writeHeader(message, {
    command,
    status,
    flags: HeaderFlag.SERVER_TO_REDIR,
    nextCommand: 0,
    creditCharge: 1,
    credits: 1,
    messageId: 7n,
    treeId: 5,
    sessionId: 0x1122334455667788n,
  });
  message.set(body, 64);
  return message;
}

Deno.test("encodeNegotiate() lays out dialects and the 3.1.1 contexts, each 8-byte aligned", () => {
  const body = encodeNegotiate({
    dialects: DIALECTS,
    securityMode: 1,
    capabilities: 0x40,
    clientGuid: Uint8Array.from({ length: 16 }, (_, i) => i),
    contexts: [
      preauthContext(Uint8Array.from({ length: 32 }, (_, i) => 0xa0 + i)),
      encryptionContext([2, 4, 1, 3]),
      signingContext([2, 1, 0]),
    ],
  });
  assertEquals(
    hex(body),
    [
      "2400", // StructureSize 36
      "0500", // DialectCount
      "0100", // SecurityMode: signing enabled
      "0000",
      "40000000", // Capabilities: encryption
      "000102030405060708090a0b0c0d0e0f", // ClientGuid
      "70000000", // NegotiateContextOffset: 64 + 36 + 10, aligned to 112
      "0300", // NegotiateContextCount
      "0000",
      "0202100200030203" + "1103", // 2.0.2, 2.1, 3.0, 3.0.2, 3.1.1
      "0000", // padding to 8
      "0100" + "2600" + "00000000", // PREAUTH_INTEGRITY, 38 bytes
      "0100" + "2000" + "0100", // one hash, 32-byte salt, SHA-512
      "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf",
      "0000", // padding to 8
      "0200" + "0a00" + "00000000", // ENCRYPTION, 10 bytes
      "0400" + "0200040001000300", // GCM-128, GCM-256, CCM-128, CCM-256
      "000000000000", // padding to 8
      "0800" + "0800" + "00000000", // SIGNING, 8 bytes
      "0300" + "020001000000", // GMAC, CMAC, HMAC-SHA256
    ].join(""),
  );
});

Deno.test("encodeNegotiate() without 3.1.1 sends no contexts and a zero ClientStartTime", () => {
  const body = encodeNegotiate({
    dialects: [0x0202, 0x0210],
    securityMode: 2,
    capabilities: 0,
    clientGuid: new Uint8Array(16),
    contexts: [preauthContext(new Uint8Array(32))],
  });
  assertEquals(
    hex(body),
    "24000200020000000000000000000000000000000000000000000000000000000000000002021002",
  );
});

/** A NEGOTIATE answer of Samba 4.17.12 on loopback: 3.1.1, AES-128-GCM, AES-GMAC. */
const SAMBA_NEGOTIATE_ANSWER = bytes(
  "fe534d424000000000000000000001000100000000000000000000000000000000000000000000000000000000" +
    "000000000000000000000000000000000000004100010011030300766d000000000000000000000000000007" +
    "0000000000800000008000000080001676879f7c82dd01000000000000000080004a00d0000000604806062b" +
    "0601050502a03e303ca00e300c060a2b06010401823702020aa32a3028a0261b246e6f745f646566696e6564" +
    "5f696e5f5246433431373840706c656173655f69676e6f72650000000000000100260000000000010020000100" +
    "73a8ed4281b64162c35e87c52e04cc83229c4fa28204bc72309cc94a8b0b25db0000020004000000000001000200" +
    "00000000080004000000000001000200",
);

Deno.test("decodeNegotiate() reads a Samba 3.1.1 answer: dialect, sizes, clock and contexts", () => {
  const header = readHeader(SAMBA_NEGOTIATE_ANSWER);
  assertEquals(header.command, Command.NEGOTIATE);
  assertOk(header.flags & HeaderFlag.SERVER_TO_REDIR);
  const answer = decodeNegotiate(SAMBA_NEGOTIATE_ANSWER);
  assertEquals(answer.dialect, 0x0311);
  assertEquals(answer.securityMode, 1);
  assertEquals(answer.capabilities, 0x7);
  assertEquals([answer.maxReadSize, answer.maxWriteSize, answer.maxTransactSize], [
    0x800000,
    0x800000,
    0x800000,
  ]);
  assertEquals(answer.systemTime, 0x01dd827c9f877616n);
  assertEquals(answer.securityBuffer.length, 74);
  assertEquals(answer.securityBuffer[0], 0x60, "a SPNEGO token");
  assertEquals(answer.contexts.map((c) => c.type), [
    ContextType.PREAUTH_INTEGRITY,
    ContextType.ENCRYPTION,
    ContextType.SIGNING,
  ]);
  const preauth = preauthIds(answer.contexts[0]!);
  assertEquals(preauth.hashes, [1]);
  assertEquals(preauth.salt.length, 32);
  assertEquals(contextIds(answer.contexts[1]!), [2], "AES-128-GCM");
  assertEquals(contextIds(answer.contexts[2]!), [2], "AES-GMAC");
});

Deno.test("decodeNegotiate() refuses contexts and buffers that lie outside the message", () => {
  const cut = SAMBA_NEGOTIATE_ANSWER.slice(0, SAMBA_NEGOTIATE_ANSWER.length - 8);
  assertThrows(() => decodeNegotiate(cut), WireError);
  const badOffset = SAMBA_NEGOTIATE_ANSWER.slice();
  new DataView(badOffset.buffer).setUint16(64 + 56, 20, true); // buffer inside the header
  assertThrows(() => decodeNegotiate(badOffset), WireError);
  assertThrows(() => decodeNegotiate(SAMBA_NEGOTIATE_ANSWER.slice(0, 100)), WireError);
});

Deno.test("encodeCreate() writes a CREATE request as MS-SMB2 2.2.13 lays it out", () => {
  assertEquals(
    hex(encodeCreate({ path: "a\\b", access: 0x00100081, disposition: 1, options: 0x40 })),
    [
      "3900", // StructureSize 57
      "00", // SecurityFlags
      "00", // RequestedOplockLevel: none
      "02000000", // ImpersonationLevel: Impersonation
      "0000000000000000", // SmbCreateFlags
      "0000000000000000", // Reserved
      "81001000", // DesiredAccess
      "00000000", // FileAttributes
      "07000000", // ShareAccess: all
      "01000000", // CreateDisposition: FILE_OPEN
      "40000000", // CreateOptions: FILE_NON_DIRECTORY_FILE
      "7800", // NameOffset 120
      "0600", // NameLength
      "00000000" + "00000000", // no create contexts
      "61005c006200", // "a\b"
    ].join(""),
  );
  const root = encodeCreate({ path: "", access: 1, disposition: 1, options: 1, share: 0 });
  assertEquals(root.length, 57, "the share's root: an empty name in a one-byte buffer");
  assertEquals(new DataView(root.buffer).getUint16(46, true), 0);
  assertEquals(new DataView(root.buffer).getUint32(32, true), 0, "ShareAccess 0");
});

Deno.test("encodeCompound() pads, chains and flags; splitCompound() gives the messages back", () => {
  const payload = encodeCompound([
    {
      header: {
        command: Command.CREATE,
        flags: 0,
        creditCharge: 1,
        credits: 256,
        messageId: 10n,
        treeId: 3,
        sessionId: 9n,
      },
      body: new Uint8Array(57).fill(1),
    },
    {
      header: {
        command: Command.CLOSE,
        flags: HeaderFlag.RELATED_OPERATIONS,
        creditCharge: 1,
        credits: 256,
        messageId: 11n,
        treeId: 3,
        sessionId: 9n,
      },
      body: new Uint8Array(24).fill(2),
    },
  ]);
  assertEquals(payload.length, 128 + 88, "121 bytes padded to 128, then 88");
  const [first, second] = splitCompound(payload);
  assertEquals(first!.length, 128);
  assertEquals(second!.length, 88);
  const h1 = readHeader(first!);
  const h2 = readHeader(second!);
  assertEquals([h1.command, h1.nextCommand, h1.messageId, h1.flags], [Command.CREATE, 128, 10n, 0]);
  assertEquals([h2.command, h2.nextCommand, h2.messageId, h2.flags], [
    Command.CLOSE,
    0,
    11n,
    HeaderFlag.RELATED_OPERATIONS,
  ]);
  assertEquals([h1.treeId, h1.sessionId, h1.credits, h1.creditCharge], [3, 9n, 256, 1]);
  assertEquals(hex(first!.subarray(0, 4)), "fe534d42");
  assertEquals(hex(h1.signature), "00".repeat(16), "signatures are the connection's to fill");
  assertEquals(first!.subarray(121), new Uint8Array(7), "zero padding");

  const bad = payload.slice();
  new DataView(bad.buffer).setUint32(20, 40, true); // NextCommand inside the header
  assertThrows(() => splitCompound(bad), WireError);
  const past = payload.slice();
  new DataView(past.buffer).setUint32(20, 4096, true);
  assertThrows(() => splitCompound(past), WireError);
  assertThrows(() => splitCompound(new Uint8Array(64)), WireError); // no SMB2 ProtocolId
});

Deno.test("frame() and frameLength(): the 4-byte Direct TCP header", () => {
  const framed = frame(new Uint8Array([1, 2, 3]));
  assertEquals(hex(framed), "00000003010203");
  assertEquals(frameLength(framed), 3);
  assertEquals(frameLength(framed.subarray(0, 3)), undefined);
  assertOk(isTransform(bytes("fd534d42")));
  assertOk(!isTransform(bytes("fe534d42")));
});

Deno.test("decodeCreate(), decodeRead(), decodeTreeConnect(), decodeSessionSetup() read answers", () => {
  const create = new Uint8Array(88);
  const cv = new DataView(create.buffer);
  cv.setUint16(0, 89, true);
  create.set(bytes("0011223344556677"), 8); // CreationTime
  cv.setBigUint64(48, 1234n, true); // EndofFile
  cv.setUint32(56, 0x10, true); // FileAttributes: directory
  create.set(Uint8Array.from({ length: 16 }, (_, i) => 0xf0 + i), 64); // FileId
  const opened = decodeCreate(answer(Command.CREATE, create));
  assertEquals(opened.creation, "0011223344556677");
  assertEquals(opened.size, 1234);
  assertEquals(opened.attributes, 0x10);
  assertEquals(hex(opened.fileId), "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");

  const read = new Uint8Array(16 + 5);
  read[0] = 17;
  read[2] = 0x50; // DataOffset: right after the 16-byte body
  new DataView(read.buffer).setUint32(4, 5, true);
  read.set(bytes("68656c6c6f"), 16);
  assertEquals(new TextDecoder().decode(decodeRead(answer(Command.READ, read))), "hello");
  new DataView(read.buffer).setUint32(4, 6, true); // one byte more than there is
  assertThrows(() => decodeRead(answer(Command.READ, read)), WireError);

  const tree = new Uint8Array(16);
  const tv = new DataView(tree.buffer);
  tv.setUint16(0, 16, true);
  tree[2] = 1; // disk
  tv.setUint32(4, 0x8000, true); // SMB2_SHAREFLAG_ENCRYPT_DATA
  tv.setUint32(12, 0x1f01ff, true);
  assertEquals(decodeTreeConnect(answer(Command.TREE_CONNECT, tree)), {
    shareType: 1,
    shareFlags: 0x8000,
    capabilities: 0,
    maximalAccess: 0x1f01ff,
  });

  const setup = new Uint8Array(8 + 3);
  const sv = new DataView(setup.buffer);
  sv.setUint16(0, 9, true);
  sv.setUint16(2, 0x4, true); // SMB2_SESSION_FLAG_ENCRYPT_DATA
  sv.setUint16(4, 72, true);
  sv.setUint16(6, 3, true);
  setup.set([7, 8, 9], 8);
  const session = decodeSessionSetup(answer(Command.SESSION_SETUP, setup));
  assertEquals(session.sessionFlags, 4);
  assertEquals(Array.from(session.token), [7, 8, 9]);
});

Deno.test("decodeQueryDirectory() reads FileDirectoryInformation entries", () => {
  const entry = (name: string, attributes: number, last: boolean): Uint8Array => {
    const utf16 = new Uint8Array(name.length * 2);
    for (let i = 0; i < name.length; i++) utf16[i * 2] = name.charCodeAt(i);
    const size = (64 + utf16.length + 7) & ~7;
    const out = new Uint8Array(size);
    const v = new DataView(out.buffer);
    v.setUint32(0, last ? 0 : size, true);
    v.setUint32(56, attributes, true);
    v.setUint32(60, utf16.length, true);
    out.set(utf16, 64);
    return out;
  };
  const list = [entry("Host.lock", 0x20, false), entry("History", 0x10, true)];
  const buffer = new Uint8Array(list[0]!.length + list[1]!.length);
  buffer.set(list[0]!);
  buffer.set(list[1]!, list[0]!.length);
  const body = new Uint8Array(8 + buffer.length);
  const v = new DataView(body.buffer);
  v.setUint16(0, 9, true);
  v.setUint16(2, 72, true);
  v.setUint32(4, buffer.length, true);
  body.set(buffer, 8);
  assertEquals(decodeQueryDirectory(answer(Command.QUERY_DIRECTORY, body)), [
    { name: "Host.lock", attributes: 0x20 },
    { name: "History", attributes: 0x10 },
  ]);
});

Deno.test("decodeChangeNotify() reads FILE_NOTIFY_INFORMATION entries; one lying outside is refused", () => {
  const entry = (action: number, name: string, last: boolean): Uint8Array => {
    const size = (12 + name.length * 2 + 3) & ~3;
    const out = new Uint8Array(size);
    const v = new DataView(out.buffer);
    v.setUint32(0, last ? 0 : size, true);
    v.setUint32(4, action, true);
    v.setUint32(8, name.length * 2, true);
    for (let i = 0; i < name.length; i++) out[12 + i * 2] = name.charCodeAt(i);
    return out;
  };
  const notify = (buffer: Uint8Array, length = buffer.length) => {
    const body = new Uint8Array(8 + buffer.length);
    const v = new DataView(body.buffer);
    v.setUint16(0, 9, true);
    v.setUint16(2, 72, true);
    v.setUint32(4, length, true);
    body.set(buffer, 8);
    return answer(Command.CHANGE_NOTIFY, body);
  };
  const first = entry(4, "Host.lock", false);
  const second = entry(2, "Generic-1.lock", true);
  const both = new Uint8Array(first.length + second.length);
  both.set(first);
  both.set(second, first.length);
  assertEquals(decodeChangeNotify(notify(both)), [
    { action: 4, name: "Host.lock" },
    { action: 2, name: "Generic-1.lock" },
  ]);
  assertEquals(decodeChangeNotify(notify(new Uint8Array(0))), []);
  // a name longer than the buffer, a buffer longer than the message
  const lying = entry(2, "Host.lock", true);
  new DataView(lying.buffer).setUint32(8, 400, true);
  assertThrows(() => decodeChangeNotify(notify(lying)), WireError);
  assertThrows(() => decodeChangeNotify(notify(both, both.length + 100)), WireError);
});

Deno.test("VALIDATE_NEGOTIATE_INFO input and output (MS-SMB2 2.2.31.4, 2.2.32.6)", () => {
  const guid = Uint8Array.from({ length: 16 }, (_, i) => i);
  assertEquals(
    hex(encodeValidateNegotiate({
      capabilities: 0x40,
      guid,
      securityMode: 1,
      dialects: [0x0202, 0x0300],
    })),
    "40000000" + "000102030405060708090a0b0c0d0e0f" + "0100" + "0200" + "0202" + "0003",
  );
  const output = bytes("07000000" + "ffeeddccbbaa99887766554433221100" + "0100" + "0003");
  const echoed = decodeValidateNegotiate(output);
  assertEquals(echoed.capabilities, 7);
  assertEquals(hex(echoed.guid), "ffeeddccbbaa99887766554433221100");
  assertEquals([echoed.securityMode, echoed.dialects[0]], [1, 0x0300]);
});

Deno.test("encodeTreeConnect() and renameInformation() name paths in UTF-16LE", () => {
  assertEquals(
    hex(encodeTreeConnect("\\\\h\\s")),
    "0900" + "0000" + "4800" + "0a00" + "5c005c0068005c007300",
  );
  assertEquals(
    hex(renameInformation("H\\x", true)),
    "01" + "00".repeat(15) + "06000000" + "48005c007800",
  );
});

Deno.test("statusName() names the statuses the store reports, else shows the number", () => {
  assertEquals(statusName(Status.ACCESS_DENIED), "STATUS_ACCESS_DENIED");
  assertEquals(statusName(Status.NETWORK_SESSION_EXPIRED), "STATUS_NETWORK_SESSION_EXPIRED");
  assertEquals(statusName(0xc0000388), "STATUS_DOWNGRADE_DETECTED");
  assertEquals(statusName(0xc0ffee01), "0xc0ffee01");
});
