/**
 * The folder template (`folderPathTemplate`, `--store`,
 * `RESOURCE_LOCKER_STORE`), parsed once for store selection and for every
 * store: which store it names, where the host goes, and whether it can be
 * used at all. Each mistake has one wording, always an {@linkcode InputError}
 * (exit 2) that names the template with its credentials masked.
 *
 * | template | kind |
 * | --- | --- |
 * | `/var/lib/locks/{0}`, `C:\locks\{0}` (Windows) | `fs`: a local or mounted folder |
 * | `\\{0}\ResourceLocks` | `fs` on Windows (through the OS), else `smb` |
 * | `smb://{0}/ResourceLocks`, `smb://fileserver:4445/Locks/{host}` | `smb` |
 * | `etcd://127.0.0.1:2379/resource-locks/{0}` | `etcd` |
 *
 * The host goes where `{0}` or `{host}` stands ({@linkcode fillHost}). A host
 * name is checked there again, whoever checked it before: only letters,
 * digits, `.`, `_` and `-`, never `.` or `..` and no `..` in it, so a host
 * can neither add a path segment (`/`, `\`), nor leave its folder (`..`), nor
 * change a URL's server, port, user, query or fragment (`:`, `@`, `?`, `#`).
 *
 * @module
 */

import { InputError } from "../errors.ts";
import { storeHostName } from "../host.ts";
import { isAbsolutePath } from "../path.ts";
import { escapeControl, kindOf, maskSecrets, truncate } from "../_text.ts";

/** Which store a template names. */
export type TemplateKind = "fs" | "smb" | "etcd";

/** What every parsed template holds. */
interface TemplateBase {
  /** The template as given. */
  text: string;
  /** The host placeholder it uses (the first one, when it holds both). */
  placeholder: "{0}" | "{host}";
}

/** A local or mounted folder: `/var/lib/locks/{0}`, and on Windows `C:\locks\{0}`, `\\{0}\share`. */
export interface FolderTemplate extends TemplateBase {
  kind: "fs";
  /** The host's folder, placeholders still in. */
  folder: string;
}

/** An SMB share: `smb://server[:port]/share/folder…` or `\\server\share\folder…`. */
export interface SmbTemplate extends TemplateBase {
  kind: "smb";
  /** Server name or address (IPv6 without brackets), placeholders still in. */
  server: string;
  /** The template's port, undefined when it names none. */
  port: number | undefined;
  /** The share, placeholders still in. */
  share: string;
  /** Folder segments inside the share ([] for the share's root), placeholders still in. */
  folder: string[];
}

/** An etcd cluster: `etcd://server[:port]/prefix/{0}`. */
export interface EtcdTemplate extends TemplateBase {
  kind: "etcd";
  /** Server name or address (IPv6 without brackets); never holds a placeholder. */
  server: string;
  /** The template's port, undefined when it names none. */
  port: number | undefined;
  /** The key prefix of a host's entries (`/resource-locks/{0}`, no trailing `/`), placeholders still in. */
  path: string;
}

/** A parsed folder template. */
export type StoreTemplate = FolderTemplate | SmbTemplate | EtcdTemplate;

const PLACEHOLDERS = /\{0\}|\{host\}/g;
const SCHEME = /^([a-z][a-z0-9+.-]+):\/\//i;
/** A server name, or an IPv4 address (placeholders replaced before the test). */
const SERVER_NAME = /^[A-Za-z0-9._-]+$/;
/** An IPv6 address as written between brackets, with an optional zone. */
const SERVER_IPV6 = /^[0-9A-Fa-f:.]+(?:%[A-Za-z0-9._-]+)?$/;
/** Controls and characters that hide or reorder text: never in a template. */
const CONTROL = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u;
const KIND_NAMES: Record<TemplateKind, string> = {
  fs: "a local folder",
  smb: "an SMB share",
  etcd: "an etcd store",
};

/**
 * A template as messages show it: quoted, cut, control characters shown,
 * and no user or password (`smb://svc:***@fs01/{0}`, `?password=***`; when
 * what precedes an `@` is not a plain `user:password`, all of it is masked).
 */
function shown(text: string): string {
  let masked = maskSecrets(text);
  const lead = /^(?:[a-z][a-z0-9+.-]*:\/\/|\\\\|\/\/)/i.exec(masked)?.[0];
  if (lead !== undefined) {
    const rest = masked.slice(lead.length);
    const at = rest.lastIndexOf("@");
    if (at >= 0 && !/^[^:/\\?#@]*(?::\*\*\*)?$/.test(rest.slice(0, at))) {
      masked = `${lead}***${rest.slice(at)}`;
    }
  }
  return `"${escapeControl(truncate(masked))}"`;
}

function refuse(text: string, reason: string): never {
  throw new InputError(`Invalid folder template ${shown(text)}: ${reason}`);
}

/**
 * Parses a folder template and tells which store it names.
 *
 * @param template the template
 * @param os the system it is for (`Deno.build.os`): on Windows `\\{0}\share`
 *   is a folder reached through the OS, elsewhere an SMB share; `C:\…` is a
 *   folder on Windows only
 * @returns the template's parts, placeholders still in
 * @throws {InputError} when it is no string, holds control characters, has no
 * host placeholder, an unknown scheme, is not an absolute folder on `os`
 * (a relative store would depend on the caller's working folder, so two
 * callers would not see each other's locks), holds a user or password, a
 * query or fragment, a bad server or port, no share (SMB), the placeholder
 * in the server (etcd), or `.` or `..` as a segment (SMB, etcd)
 *
 * @example Three stores, one parser
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseStoreTemplate } from "./_template.ts";
 * assert.deepEqual(parseStoreTemplate("\\\\{0}\\ResourceLocks", "linux"), {
 *   kind: "smb",
 *   text: "\\\\{0}\\ResourceLocks",
 *   placeholder: "{0}",
 *   server: "{0}",
 *   port: undefined,
 *   share: "ResourceLocks",
 *   folder: [],
 * });
 * assert.equal(parseStoreTemplate("\\\\{0}\\ResourceLocks", "windows").kind, "fs");
 * assert.equal(parseStoreTemplate("etcd://10.0.0.1/locks/{host}", "linux").kind, "etcd");
 * assert.throws(() => parseStoreTemplate("locks/{0}", "linux"), /not an absolute path/);
 * ```
 */
export function parseStoreTemplate(
  template: string,
  os: string = Deno.build.os,
): StoreTemplate {
  return parse(template, os, os !== "windows");
}

/**
 * Parses the template of the local-folder store.
 *
 * @param template e.g. `/var/lib/locks/{0}`
 * @param os the system it is for
 * @returns the folder, placeholders still in
 * @throws {InputError} as {@linkcode parseStoreTemplate}, and when it names another store
 */
export function parseFolderTemplate(
  template: string,
  os: string = Deno.build.os,
): FolderTemplate {
  return expect(parseStoreTemplate(template, os), "fs");
}

/**
 * Parses the template of the SMB store. `\\server\share\…` is an SMB share
 * here on every system: this store was asked for, not the OS.
 *
 * @param template e.g. `smb://{0}/ResourceLocks`, `\\{0}\ResourceLocks`
 * @returns server, port, share and folder, placeholders still in
 * @throws {InputError} as {@linkcode parseStoreTemplate}, and when it names another store
 */
export function parseSmbTemplate(template: string): SmbTemplate {
  return expect(parse(template, Deno.build.os, true), "smb");
}

/**
 * Parses the template of the etcd store.
 *
 * @param template e.g. `etcd://127.0.0.1:2379/resource-locks/{0}`
 * @returns server, port and key path, placeholders still in
 * @throws {InputError} as {@linkcode parseStoreTemplate}, and when it names another store
 */
export function parseEtcdTemplate(template: string): EtcdTemplate {
  return expect(parse(template, Deno.build.os, true), "etcd");
}

/**
 * Puts a host where a part of a template has `{0}` or `{host}`.
 *
 * The host is checked here, not only by the callers (which pass names from
 * `storeHostName`): a name that could add a path segment, leave its folder or
 * change a URL's parts is refused, so no store can be led outside its
 * template by a host name.
 *
 * @param part a part of a parsed template (folder, server, share, segment, key path)
 * @param host a host name
 * @returns the part with the host in place of every placeholder
 * @throws {InputError} when the host is not a valid host name
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fillHost } from "./_template.ts";
 * assert.equal(fillHost("/var/lib/locks/{0}", "dc01"), "/var/lib/locks/dc01");
 * assert.throws(() => fillHost("/var/lib/locks/{0}", "../etc"), /Invalid host name/);
 * ```
 */
export function fillHost(part: string, host: string): string {
  storeHostName(host); // throws on anything but [A-Za-z0-9._-], ".", ".." or ".." inside
  return part.replace(PLACEHOLDERS, () => host);
}

const HOST_ALONE = /^(?:\{0\}|\{host\})$/;
const HAS_PLACEHOLDER = /\{0\}|\{host\}/;

/**
 * Where every host's folder (or keys) sits under one root, the root: for a
 * template whose last segment is the host alone and that has no placeholder
 * before it. Undefined for any other template (a server, share or folder per
 * host): there no listing can name the hosts.
 *
 * @param parsed a parsed template
 * @param os the system a folder template is for
 * @returns the folder (`fs`), the folder segments inside the share (`smb`,
 *   [] for the share's root), or the key prefix ending in `/` (`etcd`)
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { hostsRoot, parseStoreTemplate } from "./_template.ts";
 * assert.equal(hostsRoot(parseStoreTemplate("/var/lib/locks/{0}", "linux"), "linux"), "/var/lib/locks");
 * assert.deepEqual(hostsRoot(parseStoreTemplate("smb://fs01/share/locks/{0}", "linux")), ["locks"]);
 * assert.equal(hostsRoot(parseStoreTemplate("etcd://127.0.0.1/locks/{host}", "linux")), "/locks/");
 * assert.equal(hostsRoot(parseStoreTemplate("smb://{0}/ResourceLocks", "linux")), undefined);
 * assert.equal(hostsRoot(parseStoreTemplate("/mnt/{0}/locks", "linux"), "linux"), undefined);
 * ```
 */
export function hostsRoot(parsed: FolderTemplate, os?: string): string | undefined;
export function hostsRoot(parsed: SmbTemplate): string[] | undefined;
export function hostsRoot(parsed: EtcdTemplate): string | undefined;
export function hostsRoot(parsed: StoreTemplate, os?: string): string | string[] | undefined;
export function hostsRoot(
  parsed: StoreTemplate,
  os: string = Deno.build.os,
): string | string[] | undefined {
  if (parsed.kind === "smb") {
    const last = parsed.folder.at(-1);
    const above = [parsed.server, parsed.share, ...parsed.folder.slice(0, -1)];
    if (last === undefined || !HOST_ALONE.test(last)) return undefined;
    return above.some((part) => HAS_PLACEHOLDER.test(part))
      ? undefined
      : parsed.folder.slice(0, -1);
  }
  if (parsed.kind === "etcd") {
    const root = /^(.*\/)(?:\{0\}|\{host\})$/.exec(parsed.path)?.[1];
    return root !== undefined && !HAS_PLACEHOLDER.test(root) ? root : undefined;
  }
  const separator = os === "windows" ? "[\\\\/]" : "/";
  const trimmed = parsed.folder.replace(new RegExp(`${separator}+$`), "");
  const match = new RegExp(`^(.*)${separator}(?:\\{0\\}|\\{host\\})$`).exec(trimmed);
  if (!match || HAS_PLACEHOLDER.test(match[1]!)) return undefined;
  return match[1] === "" ? "/" : match[1];
}

function expect<K extends TemplateKind>(
  parsed: StoreTemplate,
  kind: K,
): Extract<StoreTemplate, { kind: K }> {
  if (parsed.kind !== kind) {
    refuse(parsed.text, `it names ${KIND_NAMES[parsed.kind]}, not ${KIND_NAMES[kind]}`);
  }
  return parsed as Extract<StoreTemplate, { kind: K }>;
}

/** `uncIsSmb`: `\\server\share` is an SMB share (else a folder the OS reaches). */
function parse(template: string, os: string, uncIsSmb: boolean): StoreTemplate {
  if (typeof template !== "string") {
    throw new InputError(`Invalid folder template: expected a string, got ${kindOf(template)}`);
  }
  const text = template;
  if (CONTROL.test(text)) {
    refuse(text, "it holds control or invisible characters");
  }
  const first = /\{0\}|\{host\}/.exec(text);
  if (!first) refuse(text, `it needs the host placeholder "{0}" or "{host}"`);
  const placeholder = first[0] as "{0}" | "{host}";
  const scheme = SCHEME.exec(text);
  if (scheme) {
    const name = scheme[1]!.toLowerCase();
    const rest = text.slice(scheme[0].length);
    if (name === "smb") return { kind: "smb", text, placeholder, ...parseSmb(text, rest) };
    if (name === "etcd") return { kind: "etcd", text, placeholder, ...parseEtcd(text, rest) };
    refuse(text, `unknown scheme "${scheme[0]}"; use a folder, \\\\{0}\\share, smb:// or etcd://`);
  }
  const windowsDevice = /^\\\\[?.]\\/.test(text); // \\?\C:\… and \\.\…: Windows only
  if (text.startsWith("\\\\") && uncIsSmb && !windowsDevice) {
    return { kind: "smb", text, placeholder, ...parseSmb(text, text.slice(2)) };
  }
  if (isAbsolutePath(text, os) && !(os !== "windows" && windowsDevice)) {
    return { kind: "fs", text, placeholder, folder: text };
  }
  if (os !== "windows" && /^[A-Za-z]:|\\/.test(text)) {
    refuse(
      text,
      `a Windows path, and this system is ${os}; use an absolute folder such as /var/lib/locks/{0}, smb:// or \\\\{0}\\share`,
    );
  }
  refuse(
    text,
    `not an absolute path, so the store would depend on the current folder; use an absolute folder such as ${
      os === "windows" ? "C:\\locks\\{0}" : "/var/lib/locks/{0}"
    }`,
  );
}

/** What the network forms (`smb://`, `\\\\server`, `etcd://`) refuse before they are split. */
function checkNetwork(text: string, rest: string): void {
  if (rest.includes("@")) {
    refuse(
      text,
      "a user or password does not belong in a template; give SMB credentials in the config or RESOURCE_LOCKER_SMB_USERNAME and RESOURCE_LOCKER_SMB_PASSWORD (etcd takes none)",
    );
  }
  if (/[?#]/.test(rest)) refuse(text, `a query or fragment ("?", "#") has no place in a template`);
}

function parseSmb(
  text: string,
  rest: string,
): Pick<SmbTemplate, "server" | "port" | "share" | "folder"> {
  checkNetwork(text, rest);
  const [authority = "", share = "", ...segments] = rest.split(/[\\/]/);
  const { server, port } = parseAuthority(text, authority);
  if (share === "") refuse(text, "it names no share");
  const folder = segments.filter((segment) => segment !== "");
  checkSegments(text, [share, ...folder]);
  return { server, port, share, folder };
}

function parseEtcd(text: string, rest: string): Pick<EtcdTemplate, "server" | "port" | "path"> {
  checkNetwork(text, rest);
  const slash = rest.indexOf("/");
  const authority = slash < 0 ? rest : rest.slice(0, slash);
  const path = slash < 0 ? "" : rest.slice(slash).replace(/\/+$/, "");
  if (/\{0\}|\{host\}/.test(authority)) {
    refuse(text, "the host placeholder belongs in the key path, not in the server");
  }
  const { server, port } = parseAuthority(text, authority);
  checkSegments(text, path.split("/").filter((segment) => segment !== ""));
  return { server, port, path };
}

function parseAuthority(
  text: string,
  authority: string,
): { server: string; port: number | undefined } {
  const match = /^(\[[^\]]*\]|[^:[\]]*)(?::(.*))?$/.exec(authority);
  if (!match) refuse(text, `"${authority}" is not a server name or address`);
  const bracketed = match[1]!.startsWith("[");
  const server = bracketed ? match[1]!.slice(1, -1) : match[1]!;
  if (server === "") refuse(text, "it names no server");
  const plain = server.replace(PLACEHOLDERS, "h");
  if (!(bracketed ? SERVER_IPV6 : SERVER_NAME).test(plain)) {
    refuse(text, `"${server}" is not a server name or address`);
  }
  const portText = match[2];
  if (portText === undefined) return { server, port: undefined };
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (!(port >= 1 && port <= 65535)) {
    refuse(text, `port "${portText}" is not a number from 1 to 65535`);
  }
  return { server, port };
}

function checkSegments(text: string, segments: string[]): void {
  if (segments.some((segment) => segment === "." || segment === "..")) {
    refuse(text, `"." and ".." are not allowed as path segments`);
  }
}
