/**
 * Copy this file to `config.ts` (beside `cli.ts`) and uncomment what you
 * change; it replaces the PowerShell module's `Config.ps1`. As it stands it
 * changes nothing: every setting is a comment showing its default, or, where
 * the default has no fixed value, an example marked `// example` with the
 * default said above it. `--config FILE` or `RESOURCE_LOCKER_CONFIG` load
 * another file of the same shape; environment variables and flags override
 * files.
 *
 * Times take seconds (fractions allowed) or a string with a unit:
 * "250ms", "30s", "5m", "2h".
 *
 * @module
 */

import { defineConfig } from "./mod.ts";

export default defineConfig({
  // The dependency map (the original's $ModuleWideResourceDependenciesFilePath; environment
  // RESOURCE_LOCKER_DEPENDENCIES; flag --dependencies-file). Each host lists the hosts that
  // depend on it, and locking one of those locks it too (see the README).
  // By default ResourceLocker-Dependencies.json beside mod.ts, which may be absent (no
  // dependencies). A map named here must exist; a relative path is taken from this file's folder.
  // dependenciesFile: "/etc/resource-locker/dependencies.json", // example

  // Time between lock attempts (the original's $ModuleWideLockTimeout; --timeout).
  // timeout: 10,

  // Attempts in all (the original's $ModuleWideLockRetries; --retries).
  // retries: 3,

  // Where released locks go (the original's $ModuleWideLockHistoryFolderName).
  // historyFolderName: "History",

  // Lock file names (the original's $ModuleWideLockFileNameTemplate).
  // fileNameTemplate: "{0}.lock",

  // The folder template, which chooses the store (the original's
  // $ModuleWideLockFolderPathTemplate; environment RESOURCE_LOCKER_STORE; --store):
  //   "/var/lib/locks/{0}" or "C:\\locks\\{0}"   a local or mounted folder
  //   "\\\\{0}\\ResourceLocks"                    the original's shares (Windows: through the OS;
  //                                              elsewhere: the SMB store with credentials)
  //   "smb://{0}/ResourceLocks"                   the SMB store
  //   "etcd://127.0.0.1:2379/resource-locks/{0}"  the etcd store
  // By default a folder under your state directory (~/.local/state/resource-locker/locks/{0};
  // Windows: %LOCALAPPDATA%). Templates must be absolute (exit 2 otherwise).
  // store: "\\\\{0}\\ResourceLocks", // example

  // Host locks wait for shared locks to drain (false: --no-drain).
  // drain: true,

  // How a waiter on a local or mounted folder learns that the host may be free: "notify"
  // (file-system notifications), "poll" (looks every half second), or "auto": notify, except
  // on network file systems (NFS, SMB/CIFS mounts, FUSE), whose other machines' changes are
  // not notified.
  // watch: "auto",

  // How long a Host lock waits for shared locks (--drain-timeout).
  // drainTimeout: "1h",

  // Lease of every lock (--ttl). By default none: locks never expire, as in the original.
  // ttl: "10m", // example

  // Lease of the locks `run` takes, renewed while the command runs.
  // runTtl: "60s",

  // Clock skew allowed between machines before a lease counts as expired.
  // clockSkew: "30s",

  // Hosts locked, checked or released at once (a host with many dependencies, status).
  // concurrency: 64,

  // Maintenance groups: at most `max` members hold Host locks at once (status --group, test --group).
  // The dependency map file may define more in its "@groups" section. `home`: the host whose folder
  // holds the slots where each host has its own server or share (default: the first member).
  // groups: [{ name: "hv-a", members: ["hv01", "hv02", "hv03"], max: 1 }], // example

  // status --all, where each host has its own server or share: hosts to look at besides the
  // dependency map's and the groups' members; and a file naming more, one per line (--hosts FILE).
  // hosts: ["dc01", "fs01"], // example
  // hostsFile: "./hosts.txt", // example

  // status --all flags as stale: empty lock files older than this (a PowerShell writer died between
  // its two steps), and locks written by PowerShell (no lease) older than this.
  // staleEmptyAfter: "5m",
  // stalePowerShellAfter: "24h",

  // The SMB store (not used on Windows, where \\{0}\share goes through the OS with your logon).
  // It needs a user name, here or in RESOURCE_LOCKER_SMB_USERNAME (with _PASSWORD and _DOMAIN);
  // by default none. Keep passwords out of files you commit: prefer the environment.
  // smb: {
  //   username: "svc-maintenance", // example
  //   password: "…", // example
  //   domain: "CORP", // example
  //   Port when the template names none.
  //   port: 445,
  //   Time-out of connecting and of every request.
  //   timeout: "15s",
  //   "auto": every message signed whenever the server supports it (SMB 2.0.2-3.1.1 all do),
  //   every answer's signature checked; "required": also refuse a session that cannot be signed.
  //   signing: "auto",
  //   "auto": encrypted when the server or the share requires it (SMB 3); "required": always.
  //   encrypt: "auto",
  // },

  // The etcd store.
  // etcd: {
  //   More endpoints besides the template's, tried in turn (RESOURCE_LOCKER_ETCD_ENDPOINTS),
  //   such as ["http://etcd2:2379", "http://etcd3:2379"]; the cluster's other members are
  //   also learned from its member list.
  //   endpoints: [],
  //   Released locks kept per host.
  //   historyLimit: 1000,
  //   Time-out of every request.
  //   timeout: "5s",
  //   TLS: the CA that signed the members' certificates; every endpoint then speaks https.
  //   ca: "/etc/resource-locker/etcd-ca.pem", // example
  //   A client certificate for etcd's --client-cert-auth (with authentication on, its subject
  //   must have no Common Name: etcd's HTTP gateway refuses one).
  //   cert: "/etc/resource-locker/etcd-client.pem", // example
  //   key: "/etc/resource-locker/etcd-client-key.pem", // example
  //   The etcd user, when etcd has authentication on; its role needs read and write on the lock
  //   prefix only (RESOURCE_LOCKER_ETCD_USERNAME / _PASSWORD). Never printed or logged. Keep
  //   passwords out of files you commit; prefer the environment.
  //   username: "resource-locker", // example
  //   password: "…", // example
  // },

  // resource-locker serve: who may take and release locks through it (the API, FleetLock,
  // breaking from the page). Each { name, token }: the name is recorded in History, the token
  // (16 characters at least) is sent as "Authorization: Bearer <token>" and never shown.
  // None (and no RESOURCE_LOCKER_SERVE_TOKEN): the server is read-only. Prefer the environment
  // or a config file only its user can read, such as [{ name: "ops", token: "…" }].
  // serve: {
  //   tokens: [],
  // },
});
