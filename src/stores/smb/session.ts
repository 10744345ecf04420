/**
 * The SMB session on a connection: NEGOTIATE (SMB 2.0.2 to 3.1.1), the
 * NTLMv2 logon (SESSION_SETUP, `ntlm.ts`), the keys (`crypto.ts`), signing
 * or sealing switched on for every later message, TREE_CONNECT of the share,
 * and for 3.0/3.0.2 the validation of the negotiation. One deadline bounds
 * it all; each failure is named.
 *
 * Security, as MS-SMB2 has it:
 * - 3.1.1: preauth integrity (SHA-512 over every NEGOTIATE and SESSION_SETUP
 *   message up to the last answer) goes into the keys, and the server signs
 *   its last SESSION_SETUP answer with them: a change of any earlier
 *   message (a downgrade) makes that signature fail. Signing: AES-GMAC when
 *   the server takes the signing context, else AES-CMAC. Ciphers offered:
 *   AES-128-GCM, AES-256-GCM, AES-128-CCM, AES-256-CCM.
 * - 3.0, 3.0.2: AES-CMAC signing, AES-128-CCM encryption, and
 *   FSCTL_VALIDATE_NEGOTIATE_INFO (signed both ways) after the tree connect.
 * - 2.0.2, 2.1: HMAC-SHA256 signing, no encryption.
 *
 * Signing is in force after the logon whenever the server supports it
 * (`signing: "auto"`, every SMB2 server does) or requires it; with
 * `"required"` the client also says so in NEGOTIATE. Encryption is in force
 * when the server requires it for the session, the share requires it, or
 * `encrypt: "required"`. The global encryption capability is always set:
 * Samba picks a cipher only then, even on 3.1.1.
 *
 * @module
 */

import { type Protection, type SmbConnection, SmbFailure } from "./connection.ts";
import {
  type Cipher,
  deriveKeys,
  preauthHash,
  seal,
  signature,
  type SigningAlgorithm,
  unseal,
  verify,
} from "./crypto.ts";
import { authenticateMessage, negotiateMessage, type NtlmCredentials } from "./ntlm.ts";
import {
  Capability,
  CipherId,
  Command,
  contextIds,
  ContextType,
  decodeIoctl,
  decodeNegotiate,
  decodeSessionSetup,
  decodeTreeConnect,
  decodeValidateNegotiate,
  Dialect,
  dialectName,
  DIALECTS,
  encodeIoctl,
  encodeNegotiate,
  encodeSessionSetup,
  encodeTreeConnect,
  encodeValidateNegotiate,
  encryptionContext,
  FSCTL_VALIDATE_NEGOTIATE_INFO,
  HASH_SHA512,
  HeaderFlag,
  type NegotiateResponse,
  preauthContext,
  preauthIds,
  readHeader,
  SecurityMode,
  SessionFlag,
  ShareFlag,
  signingContext,
  SigningId,
  Status,
  statusName,
} from "./wire.ts";

/** When to sign: always when the server can, or refuse a session that cannot be signed. */
export type SigningSetting = "auto" | "required";
/** When to encrypt: when the server or share requires it, or always. */
export type EncryptSetting = "auto" | "required";

/** What the session needs. */
export interface SessionOptions {
  /** Who logs on. */
  credentials: NtlmCredentials;
  /** The share, `\\server\share`. */
  sharePath: string;
  /** The share's name, for messages. */
  share: string;
  /** Time for the whole set up, in ms. */
  timeoutMs: number;
  /**
   * `auto`: sign whenever the server supports it; `required`: also tell
   * the server, and refuse a session that cannot be signed; `off` (for
   * measurements only): sign only when the server requires it.
   * @default "auto"
   */
  signing?: SigningSetting | "off";
  /** `auto`: encrypt when the server or share requires it; `required`: always. @default "auto" */
  encrypt?: EncryptSetting;
}

/** What the session set up. */
export interface SessionInfo {
  /** The dialect spoken, e.g. 0x0311. */
  dialect: number;
  /** How messages are signed, or undefined when they are not. */
  signing: SigningAlgorithm | undefined;
  /** The cipher negotiated (3.x), whether in use or not. */
  cipher: Cipher | undefined;
  /** Whether every message is encrypted. */
  encrypted: boolean;
  /** The server's clock minus ours, from NEGOTIATE's SystemTime. */
  clockOffsetMs: number;
}

/** Ciphers offered on 3.1.1, most wanted first (GCM is the faster here). */
const CIPHERS: readonly [number, Cipher][] = [
  [CipherId.AES_128_GCM, "aes-128-gcm"],
  [CipherId.AES_256_GCM, "aes-256-gcm"],
  [CipherId.AES_128_CCM, "aes-128-ccm"],
  [CipherId.AES_256_CCM, "aes-256-ccm"],
];
/** Signing algorithms offered on 3.1.1, most wanted first. */
const SIGNING: readonly [number, SigningAlgorithm][] = [
  [SigningId.AES_GMAC, "aes-gmac"],
  [SigningId.AES_CMAC, "aes-cmac"],
  [SigningId.HMAC_SHA256, "hmac-sha256"],
];
/** Capabilities offered: encryption only (no DFS, leases or multi-channel). */
const CAPABILITIES = Capability.ENCRYPTION;

function userOf(credentials: NtlmCredentials): string {
  return credentials.domain
    ? `${credentials.domain}\\${credentials.username}`
    : credentials.username;
}

/** The preauth integrity hash so far: 64 zero bytes, then each message hashed in (3.1.1). */
class Preauth {
  #value: Uint8Array = new Uint8Array(64);
  #on = true;

  /** Stops hashing: the dialect is not 3.1.1. */
  off(): void {
    this.#on = false;
  }

  /** Hashes `messages` in, in order. */
  add(...messages: Uint8Array[]): void {
    if (!this.#on) return;
    for (const message of messages) this.#value = preauthHash(this.#value, message);
  }

  /** A copy going on from here (the session's, from the connection's). */
  fork(): Preauth {
    const copy = new Preauth();
    copy.#value = this.#value;
    copy.#on = this.#on;
    return copy;
  }

  get value(): Uint8Array | undefined {
    return this.#on ? this.#value : undefined;
  }
}

/**
 * Negotiates, logs on (NTLMv2), switches signing or sealing on, connects
 * the share and (3.0, 3.0.2) validates the negotiation, all within
 * `options.timeoutMs`.
 *
 * @param connection a connection just opened
 * @param options credentials, share, time limit, signing and encryption
 * @returns what was set up
 * @throws {SmbFailure} naming what failed
 */
export async function setUpSession(
  connection: SmbConnection,
  options: SessionOptions,
): Promise<SessionInfo> {
  const deadline = Date.now() + options.timeoutMs;
  const left = () => Math.max(1, deadline - Date.now());
  const server = connection.server;
  const user = userOf(options.credentials);
  const signingSetting = options.signing ?? "auto";
  const encryptSetting = options.encrypt ?? "auto";
  const securityMode = SecurityMode.SIGNING_ENABLED |
    (signingSetting === "required" ? SecurityMode.SIGNING_REQUIRED : 0);

  // --- NEGOTIATE ---------------------------------------------------------
  const sentAt = Date.now();
  // Samba takes connections with one GUID for one client and hands them to
  // one process, which stalls when several connect at once. Each
  // connection is its own client.
  const clientGuid = crypto.getRandomValues(new Uint8Array(16));
  const negotiate = await connection.request({
    command: Command.NEGOTIATE,
    body: encodeNegotiate({
      dialects: DIALECTS,
      securityMode,
      capabilities: CAPABILITIES,
      clientGuid,
      contexts: [
        preauthContext(crypto.getRandomValues(new Uint8Array(32))),
        encryptionContext(CIPHERS.map(([id]) => id)),
        signingContext(SIGNING.map(([id]) => id)),
      ],
    }),
  }, left()).catch((error) => {
    // A server that speaks none of our dialects (an SMB1-only one) hangs up.
    if (!(error instanceof SmbFailure && error.closedByServer)) throw error;
    throw new SmbFailure(
      `SMB server "${server}" closed the connection when offered SMB ${
        DIALECTS.map(dialectName).join(", ")
      }: it shares no dialect with this client (an SMB1-only server?)`,
      undefined,
      { cause: error },
    );
  });
  if (negotiate.status !== Status.SUCCESS) {
    throw new SmbFailure(
      negotiate.status === Status.NOT_SUPPORTED
        ? `SMB server "${server}" shares no dialect with this client, which speaks SMB ${
          DIALECTS.map(dialectName).join(", ")
        } (STATUS_NOT_SUPPORTED)`
        : `SMB server "${server}" refused to negotiate (${statusName(negotiate.status)})`,
      negotiate.status,
    );
  }
  const negotiated = decodeNegotiate(negotiate.message);
  const dialect = negotiated.dialect;
  if (!DIALECTS.includes(dialect)) {
    throw new SmbFailure(
      `SMB server "${server}" chose dialect ${
        dialectName(dialect)
      }, which this client did not offer`,
    );
  }
  const preauth = new Preauth();
  if (dialect === Dialect.SMB311) preauth.add(negotiate.sent, negotiate.message);
  else preauth.off();
  const { signingAlgorithm, cipher } = securityOf(negotiated, server);
  const serverRequiresSigning = (negotiated.securityMode & SecurityMode.SIGNING_REQUIRED) !== 0;
  let clockOffsetMs = 0;
  // FILETIME: 100 ns since 1601-01-01 UTC; compare with the middle of the round trip.
  const serverMs = Number(negotiated.systemTime / 10_000n) - 11_644_473_600_000;
  if (serverMs > 0) clockOffsetMs = serverMs - (sentAt + Date.now()) / 2;
  connection.creditCharge = dialect >= Dialect.SMB210 ? 1 : 0;
  if (encryptSetting === "required" && cipher === undefined) {
    throw new SmbFailure(
      dialect < Dialect.SMB300
        ? `SMB server "${server}" speaks SMB ${
          dialectName(dialect)
        }, which has no encryption, and smb.encrypt is "required"`
        : `SMB server "${server}" offers no encryption, and smb.encrypt is "required"`,
    );
  }

  // --- SESSION_SETUP (NTLMv2) ----------------------------------------------
  const session = preauth.fork();
  const step1 = await connection.request({
    command: Command.SESSION_SETUP,
    body: encodeSessionSetup({ securityMode, capabilities: 0, token: negotiateMessage() }),
  }, left());
  if (step1.status !== Status.MORE_PROCESSING_REQUIRED) {
    throw new SmbFailure(
      `SMB server "${server}" refused NTLM logon (${statusName(step1.status)})`,
      step1.status,
    );
  }
  session.add(step1.sent, step1.message);
  connection.sessionId = step1.sessionId;
  let authentication;
  try {
    authentication = authenticateMessage(
      decodeSessionSetup(step1.message).token,
      options.credentials,
    );
  } catch (error) {
    throw new SmbFailure(
      `cannot log on to SMB server "${server}": ${(error as Error).message}`,
      undefined,
      { cause: error },
    );
  }
  const step2 = await connection.request({
    command: Command.SESSION_SETUP,
    body: encodeSessionSetup({ securityMode, capabilities: 0, token: authentication.message }),
  }, left());
  session.add(step2.sent);
  if (step2.status !== Status.SUCCESS) {
    throw logonFailure(step2.status, user, server, dialect, serverRequiresSigning);
  }
  const derived = deriveKeys(dialect, authentication.sessionKey, cipher, session.value);
  // The last SESSION_SETUP answer, checked before anything in it is read:
  // signed with the new key (3.1.1 always, which proves that no NEGOTIATE
  // or SESSION_SETUP message was changed on the way).
  const answerSigned = (readHeader(step2.message).flags & HeaderFlag.SIGNED) !== 0;
  if (answerSigned && !verify(signingAlgorithm, derived.signingKey, step2.message)) {
    throw badSignature(server, "its logon answer");
  }
  const sessionFlags = decodeSessionSetup(step2.message).sessionFlags;
  const anonymous = (sessionFlags & (SessionFlag.IS_GUEST | SessionFlag.IS_NULL)) !== 0;
  const keys = anonymous ? undefined : derived;

  // --- signing and sealing from here on -----------------------------------
  const signed = !anonymous && (signingSetting !== "off" || serverRequiresSigning);
  if (anonymous && (signingSetting === "required" || serverRequiresSigning)) {
    throw new SmbFailure(
      `SMB server "${server}" logged "${user}" on as a guest, whose session cannot be signed, ` +
        (serverRequiresSigning
          ? "and the server requires signing"
          : `and smb.signing is "required"`),
    );
  }
  if (!anonymous && !answerSigned && dialect === Dialect.SMB311) {
    throw new SmbFailure(
      `SMB server "${server}" did not sign its SMB 3.1.1 logon answer, so the negotiation cannot be trusted`,
    );
  }
  let encrypted = false;
  /** Signs (`sign`) or seals (`sealAll`) every message from now on, or neither. */
  const protect = (sealAll: boolean, sign = signed) => {
    encrypted = sealAll;
    if (keys === undefined || (!sign && !sealAll)) {
      connection.protect(undefined);
      return;
    }
    const protection: Protection = { require: sealAll ? "sealed" : "signed" };
    if (sign) {
      protection.sign = (message) => {
        message[16]! |= HeaderFlag.SIGNED;
        message.set(signature(signingAlgorithm, keys.signingKey, message), 48);
      };
      protection.verify = (message) => verify(signingAlgorithm, keys.signingKey, message);
    }
    if (cipher !== undefined) {
      const sessionId = connection.sessionId;
      protection.seal = (payload) => seal(cipher, keys.encryptionKey, sessionId, payload);
      protection.unseal = (packet) => {
        const opened = unseal(cipher, keys.decryptionKey, packet);
        return opened?.sessionId === sessionId ? opened.message : undefined;
      };
    }
    connection.protect(protection);
  };
  const sessionEncrypted = (sessionFlags & SessionFlag.ENCRYPT_DATA) !== 0;
  if ((sessionEncrypted || encryptSetting === "required") && cipher === undefined) {
    throw new SmbFailure(
      `SMB server "${server}" requires encryption, which needs SMB 3 with a cipher; it offered SMB ${
        dialectName(dialect)
      } and none`,
    );
  }
  if (anonymous && (sessionEncrypted || encryptSetting === "required")) {
    throw new SmbFailure(
      `SMB server "${server}" logged "${user}" on as a guest, whose session cannot be encrypted`,
    );
  }
  // A 3.1.1 TREE_CONNECT is always signed (MS-SMB2 3.2.4.1.1), also when
  // nothing else is.
  protect(sessionEncrypted || encryptSetting === "required", signed || dialect === Dialect.SMB311);

  // --- TREE_CONNECT ----------------------------------------------------------
  const tree = await connection.request({
    command: Command.TREE_CONNECT,
    body: encodeTreeConnect(options.sharePath),
    treeId: 0,
  }, left());
  if (tree.status !== Status.SUCCESS) {
    throw treeFailure(tree.status, options.share, server, user, dialect, cipher);
  }
  const shareFlags = decodeTreeConnect(tree.message).shareFlags;
  connection.treeId = readHeader(tree.message).treeId;
  if ((shareFlags & ShareFlag.ENCRYPT_DATA) && !encrypted) {
    if (cipher === undefined || keys === undefined) {
      throw new SmbFailure(
        `share "${options.share}" on SMB server "${server}" requires encryption, ` +
          `which SMB ${dialectName(dialect)} has not`,
      );
    }
    protect(true);
  } else {
    protect(encrypted);
  }

  // --- VALIDATE_NEGOTIATE_INFO (3.0, 3.0.2) -----------------------------------
  if ((dialect === Dialect.SMB300 || dialect === Dialect.SMB302) && (signed || encrypted)) {
    await validateNegotiate(connection, negotiated, {
      capabilities: CAPABILITIES,
      guid: clientGuid,
      securityMode,
      dialects: DIALECTS,
    }, left());
  }
  return {
    dialect,
    signing: signed && !encrypted ? signingAlgorithm : undefined,
    cipher,
    encrypted,
    clockOffsetMs,
  };
}

/** The signing algorithm and cipher the NEGOTIATE answer settles. */
function securityOf(
  negotiated: NegotiateResponse,
  server: string,
): { signingAlgorithm: SigningAlgorithm; cipher: Cipher | undefined } {
  const dialect = negotiated.dialect;
  if (dialect < Dialect.SMB300) return { signingAlgorithm: "hmac-sha256", cipher: undefined };
  if (dialect < Dialect.SMB311) {
    return {
      signingAlgorithm: "aes-cmac",
      cipher: negotiated.capabilities & Capability.ENCRYPTION ? "aes-128-ccm" : undefined,
    };
  }
  let signingAlgorithm: SigningAlgorithm = "aes-cmac";
  let cipher: Cipher | undefined;
  let preauthSeen = false;
  for (const context of negotiated.contexts) {
    if (context.type === ContextType.PREAUTH_INTEGRITY) {
      const { hashes } = preauthIds(context);
      if (hashes.length !== 1 || hashes[0] !== HASH_SHA512) {
        throw new SmbFailure(`SMB server "${server}" chose no SHA-512 preauth integrity`);
      }
      preauthSeen = true;
    } else if (context.type === ContextType.ENCRYPTION) {
      const [id] = contextIds(context);
      if (id === 0) continue; // no common cipher
      const found = CIPHERS.find(([offered]) => offered === id);
      if (found === undefined) {
        throw new SmbFailure(`SMB server "${server}" chose cipher ${id}, which was not offered`);
      }
      cipher = found[1];
    } else if (context.type === ContextType.SIGNING) {
      const [id] = contextIds(context);
      const found = SIGNING.find(([offered]) => offered === id);
      if (found === undefined) {
        throw new SmbFailure(
          `SMB server "${server}" chose signing algorithm ${id}, which was not offered`,
        );
      }
      signingAlgorithm = found[1];
    }
  }
  if (!preauthSeen) {
    throw new SmbFailure(`SMB server "${server}" sent no preauth integrity context for SMB 3.1.1`);
  }
  return { signingAlgorithm, cipher };
}

/**
 * FSCTL_VALIDATE_NEGOTIATE_INFO: the server repeats, signed, what it
 * answered in NEGOTIATE; a difference means someone changed the
 * unsigned NEGOTIATE on the way (a downgrade).
 */
async function validateNegotiate(
  connection: SmbConnection,
  negotiated: NegotiateResponse,
  offered: {
    capabilities: number;
    guid: Uint8Array;
    securityMode: number;
    dialects: readonly number[];
  },
  timeoutMs: number,
): Promise<void> {
  const server = connection.server;
  const reply = await connection.request({
    command: Command.IOCTL,
    body: encodeIoctl({
      ctlCode: FSCTL_VALIDATE_NEGOTIATE_INFO,
      input: encodeValidateNegotiate(offered),
      maxOutput: 24,
    }),
  }, timeoutMs);
  if (reply.status !== Status.SUCCESS) {
    throw new SmbFailure(
      `SMB server "${server}" did not validate the negotiation (${statusName(reply.status)})`,
      reply.status,
    );
  }
  const echoed = decodeValidateNegotiate(decodeIoctl(reply.message));
  const same = echoed.capabilities === negotiated.capabilities &&
    echoed.securityMode === negotiated.securityMode &&
    echoed.dialects[0] === negotiated.dialect &&
    echoed.guid.every((byte, i) => byte === negotiated.serverGuid[i]);
  if (!same) {
    throw new SmbFailure(
      `SMB server "${server}" validated another negotiation than the one received: ` +
        "the NEGOTIATE answer was changed on the way",
    );
  }
}

function badSignature(server: string, what: string): SmbFailure {
  return new SmbFailure(
    `SMB server "${server}" sent ${what} with a bad signature: ` +
      "it was changed on the way, or the keys differ",
  );
}

function logonFailure(
  status: number,
  user: string,
  server: string,
  dialect: number,
  serverRequiresSigning: boolean,
): SmbFailure {
  const refused = [
    Status.LOGON_FAILURE,
    Status.ACCOUNT_RESTRICTION,
    Status.PASSWORD_EXPIRED,
    Status.ACCOUNT_DISABLED,
    Status.ACCOUNT_LOCKED_OUT,
  ].includes(status as typeof Status.LOGON_FAILURE);
  let hint = "";
  if (status === Status.ACCESS_DENIED && dialect < Dialect.SMB300) {
    // Samba refuses the logon itself when it requires encryption that the
    // dialect cannot give.
    hint = `: the server may require encryption, which needs SMB 3, and it offered SMB ${
      dialectName(dialect)
    }`;
  } else if (status === Status.ACCESS_DENIED && serverRequiresSigning) {
    hint = ": the server requires signing";
  }
  return new SmbFailure(
    status === Status.LOGON_FAILURE
      ? `logon as "${user}" refused by SMB server "${server}": wrong user name or password (STATUS_LOGON_FAILURE)`
      : refused
      ? `logon as "${user}" refused by SMB server "${server}" (${statusName(status)})`
      : `logon as "${user}" to SMB server "${server}" failed (${statusName(status)})${hint}`,
    status,
  );
}

function treeFailure(
  status: number,
  share: string,
  server: string,
  user: string,
  dialect: number,
  cipher: Cipher | undefined,
): SmbFailure {
  if (status === Status.BAD_NETWORK_NAME) {
    return new SmbFailure(
      `share "${share}" does not exist on SMB server "${server}" (STATUS_BAD_NETWORK_NAME)`,
      status,
    );
  }
  if (status === Status.ACCESS_DENIED) {
    const hint = cipher === undefined
      ? ` (the share may require encryption, which SMB ${dialectName(dialect)} has not)`
      : "";
    return new SmbFailure(
      `access to share "${share}" on SMB server "${server}" denied for "${user}" (STATUS_ACCESS_DENIED)${hint}`,
      status,
    );
  }
  return new SmbFailure(
    `cannot connect share "${share}" on SMB server "${server}" (${statusName(status)})`,
    status,
  );
}
