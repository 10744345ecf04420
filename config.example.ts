/**
 * Copy this file to `config.ts` (beside `cli.ts`) and change what you need;
 * it replaces the PowerShell module's `Config.ps1`. Every setting is
 * optional: what you leave out keeps its default. `--config FILE` or
 * `RESOURCE_LOCKER_CONFIG` load another file of the same shape; environment
 * variables and flags override files.
 *
 * Times take seconds (fractions allowed) or a string with a unit:
 * "250ms", "30s", "5m", "2h".
 *
 * @module
 */

import { defineConfig } from "./mod.ts";

export default defineConfig({
  // $ModuleWideResourceDependenciesFilePath (env RESOURCE_LOCKER_DEPENDENCIES).
  // Default: ResourceLocker-Dependencies.json beside mod.ts.
  // A named map must exist (exit 2 otherwise); a relative path is taken from this file's folder.
  // dependenciesFilePath: "./ResourceLocker-Dependencies.json",

  // $ModuleWideLockTimeout: time between lock attempts (--timeout).
  lockTimeout: 10,

  // $ModuleWideLockRetries: attempts in all (--retries).
  lockRetries: 3,

  // $ModuleWideLockHistoryFolderName: where released locks go.
  historyFolderName: "History",

  // $ModuleWideLockFileNameTemplate.
  fileNameTemplate: "{0}.lock",

  // $ModuleWideLockFolderPathTemplate (env RESOURCE_LOCKER_STORE, --store).
  // The folder template chooses the store:
  //   "/var/lib/locks/{0}" or "C:\\locks\\{0}"  a local or mounted folder
  //   "\\\\{0}\\ResourceLocks"                   the original's shares (Windows: through the OS;
  //                                             elsewhere: the SMB store with credentials)
  //   "smb://{0}/ResourceLocks"                  the SMB store
  //   "etcd://127.0.0.1:2379/resource-locks/{0}" the etcd store
  // Default: a folder under your state directory (~/.local/state/resource-locker/locks/{0}).
  // Templates must be absolute (exit 2 otherwise).
  // folderPathTemplate: "\\\\{0}\\ResourceLocks",

  // Host locks wait for shared locks to drain (--no-drain turns it off).
  drain: true,

  // How long a Host lock waits for shared locks (--drain-timeout).
  drainTimeout: "1h",

  // Lease of every lock (--ttl). Leave it out for locks that never expire, as in the original.
  // lease: "10m",

  // Lease of the locks `run` takes, renewed while the command runs.
  runLease: "60s",

  // Clock skew allowed between machines before an expired lease counts as expired.
  clockSkew: "30s",

  // Hosts locked, checked or released at once (a host with many dependencies, status).
  concurrency: 64,

  smb: {
    // Or RESOURCE_LOCKER_SMB_USERNAME / _PASSWORD / _DOMAIN. Never printed or logged.
    username: "svc-maintenance",
    // password: "…",   keep passwords out of files you commit; prefer the environment
    domain: "CORP",
    port: 445,
    timeout: "15s",
    // "auto": every message signed whenever the server supports it (SMB 2.0.2-3.1.1 all do),
    // every answer's signature checked; "required": also refuse a session that cannot be signed.
    signing: "auto",
    // "auto": encrypted when the server or the share requires it (SMB 3); "required": always.
    encrypt: "auto",
  },

  etcd: {
    // More endpoints besides the template's, tried in turn (env RESOURCE_LOCKER_ETCD_ENDPOINTS).
    endpoints: ["http://127.0.0.1:2379"],
    historyLimit: 1000,
    timeout: "5s",
  },
});
