/**
 * The SMB session on a connection: NEGOTIATE, the NTLMv2 logon
 * (SESSION_SETUP, `ntlm.ts`) and TREE_CONNECT of the share, each bounded by
 * one deadline, each failure named.
 *
 * @module
 */

import { type Reply, type SmbConnection, SmbFailure } from "./connection.ts";
import { authenticateMessage, negotiateMessage, type NtlmCredentials } from "./ntlm.ts";
import {
  Command,
  decodeNegotiate,
  decodeSessionSetup,
  decodeTreeConnect,
  Dialect,
  encodeNegotiate,
  encodeSessionSetup,
  encodeTreeConnect,
  readHeader,
  SecurityMode,
  Status,
  statusName,
} from "./wire.ts";

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
}

/** What the session set up. */
export interface SessionInfo {
  /** The dialect spoken. */
  dialect: number;
  /** The server's clock minus ours, from NEGOTIATE's SystemTime. */
  clockOffsetMs: number;
}

/** Dialects offered. */
const OFFERED = [Dialect.SMB202, Dialect.SMB210];

function userOf(credentials: NtlmCredentials): string {
  return credentials.domain
    ? `${credentials.domain}\\${credentials.username}`
    : credentials.username;
}

/**
 * Negotiates, logs on (NTLMv2) and connects the share, all within
 * `options.timeoutMs`.
 *
 * @param connection a connection just opened
 * @param options credentials, share, time limit
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

  const sentAt = Date.now();
  const clientGuid = crypto.getRandomValues(new Uint8Array(16));
  const negotiate = await connection.request({
    command: Command.NEGOTIATE,
    body: encodeNegotiate({
      dialects: OFFERED,
      securityMode: SecurityMode.SIGNING_ENABLED,
      capabilities: 0,
      // Samba takes connections with one GUID for one client and hands them
      // to one process, which stalls when several connect at once. Each
      // connection is its own client.
      clientGuid,
    }),
  }, left());
  if (negotiate.status !== Status.SUCCESS) {
    throw new SmbFailure(
      negotiate.status === Status.NOT_SUPPORTED
        ? `SMB server "${server}" speaks neither SMB 2.0.2 nor 2.1 (STATUS_NOT_SUPPORTED)`
        : `SMB server "${server}" refused to negotiate (${statusName(negotiate.status)})`,
      negotiate.status,
    );
  }
  const negotiated = decodeNegotiate(negotiate.message);
  let clockOffsetMs = 0;
  // FILETIME: 100 ns since 1601-01-01 UTC; compare with the middle of the round trip.
  const serverMs = Number(negotiated.systemTime / 10_000n) - 11_644_473_600_000;
  if (serverMs > 0) clockOffsetMs = serverMs - (sentAt + Date.now()) / 2;
  if (negotiated.securityMode & SecurityMode.SIGNING_REQUIRED) {
    throw new SmbFailure(`SMB server "${server}" requires signing, which this client cannot do`);
  }
  connection.creditCharge = negotiated.dialect >= Dialect.SMB210 ? 1 : 0;

  const step1 = await connection.request({
    command: Command.SESSION_SETUP,
    body: encodeSessionSetup({
      securityMode: SecurityMode.SIGNING_ENABLED,
      capabilities: 0,
      token: negotiateMessage(),
    }),
  }, left());
  if (step1.status !== Status.MORE_PROCESSING_REQUIRED) {
    throw new SmbFailure(
      `SMB server "${server}" refused NTLM logon (${statusName(step1.status)})`,
      step1.status,
    );
  }
  connection.sessionId = step1.sessionId;
  let token: Uint8Array;
  try {
    token = authenticateMessage(decodeSessionSetup(step1.message).token, options.credentials)
      .message;
  } catch (error) {
    throw new SmbFailure(
      `cannot log on to SMB server "${server}": ${(error as Error).message}`,
      undefined,
      { cause: error },
    );
  }
  const step2 = await connection.request({
    command: Command.SESSION_SETUP,
    body: encodeSessionSetup({
      securityMode: SecurityMode.SIGNING_ENABLED,
      capabilities: 0,
      token,
    }),
  }, left());
  if (step2.status !== Status.SUCCESS) throw logonFailure(step2, user, server);

  const tree = await connection.request({
    command: Command.TREE_CONNECT,
    body: encodeTreeConnect(options.sharePath),
    treeId: 0,
  }, left());
  if (tree.status !== Status.SUCCESS) {
    throw new SmbFailure(
      tree.status === Status.BAD_NETWORK_NAME
        ? `share "${options.share}" does not exist on SMB server "${server}" (STATUS_BAD_NETWORK_NAME)`
        : tree.status === Status.ACCESS_DENIED
        ? `access to share "${options.share}" on SMB server "${server}" denied for "${user}" (STATUS_ACCESS_DENIED)`
        : `cannot connect share "${options.share}" on SMB server "${server}" (${
          statusName(tree.status)
        })`,
      tree.status,
    );
  }
  decodeTreeConnect(tree.message);
  connection.treeId = readHeader(tree.message).treeId;
  return { dialect: negotiated.dialect, clockOffsetMs };
}

function logonFailure(reply: Reply, user: string, server: string): SmbFailure {
  const refused = [
    Status.LOGON_FAILURE,
    Status.ACCOUNT_RESTRICTION,
    Status.PASSWORD_EXPIRED,
    Status.ACCOUNT_DISABLED,
    Status.ACCOUNT_LOCKED_OUT,
  ].includes(reply.status as typeof Status.LOGON_FAILURE);
  return new SmbFailure(
    reply.status === Status.LOGON_FAILURE
      ? `logon as "${user}" refused by SMB server "${server}": wrong user name or password (STATUS_LOGON_FAILURE)`
      : refused
      ? `logon as "${user}" refused by SMB server "${server}" (${statusName(reply.status)})`
      : `logon as "${user}" to SMB server "${server}" failed (${statusName(reply.status)})`,
    reply.status,
  );
}
