/**
 * `history <host>`: released and broken locks of a host, newest first.
 *
 * @module
 */

import { getResourceLockHistory } from "../../src/api.ts";
import { formatDuration } from "../../src/duration.ts";
import type { CommandDeclaration } from "../command.ts";
import { EXIT } from "../errors.ts";
import { oneOperand, table } from "../format.ts";
import { historyDocument } from "../../src/documents.ts";
import { printJson } from "../io.ts";
import { wholeNumber } from "../options.ts";

/** `history <host>`. */
export const HISTORY: CommandDeclaration = {
  name: "history",
  operands: "<host>",
  summary: "released and broken locks",
  description: "Shows released and broken locks, newest first.",
  flags: [{ name: "limit", value: "N", help: "newest entries at most", default: "all" }],
  async handler({ operands, values, io, storeOptions }) {
    const host = oneOperand(operands, "host", "history");
    const limit = wholeNumber(values, "limit", 1);
    const entries = await getResourceLockHistory(host, {
      ...storeOptions,
      ...limit ? { limit } : {},
    });
    const now = Date.now();
    if (values.json) {
      printJson(io, historyDocument(host, entries, now));
      return EXIT.OK;
    }
    if (entries.length === 0) {
      if (!values.quiet) io.err(`No history for "${host.toLowerCase()}"`);
      return EXIT.OK;
    }
    const rows = [[
      "TYPE",
      "CALLER",
      "DESCRIPTION",
      "LOCKED",
      "RELEASED",
      "HELD",
      "BROKEN BY",
      "SESSION",
    ]];
    for (const e of entries) {
      rows.push([
        e.type,
        e.caller ?? "-",
        e.description ?? "-",
        e.lockedAt?.toISOString() ?? "?",
        e.unlockedAt?.toISOString() ?? "?",
        e.lockedAt && e.unlockedAt
          ? formatDuration(e.unlockedAt.getTime() - e.lockedAt.getTime())
          : "?",
        e.brokenBy ? `${e.brokenBy} (${e.breakReason ?? "no reason"})` : "-",
        e.sessionId ?? "?",
      ]);
    }
    io.out(table(rows));
    return EXIT.OK;
  },
};
