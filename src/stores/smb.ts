/**
 * The SMB store: each host's lock folder on an SMB share. The client lives
 * in layers under `./smb/` (wire, crypto, connection, session, files,
 * store); this module is the entry point the rest of the code imports.
 *
 * Load it with a dynamic `import()`: nothing of the SMB client loads for the
 * local store.
 *
 * @module
 */

export { openSmbStore, type SmbStoreOptions } from "./smb/store.ts";
