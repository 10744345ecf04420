/**
 * `deps <host>`: the hosts locked together with a host, as a list, JSON, or
 * a graph for Graphviz (`dot`) or Mermaid.
 *
 * @module
 */

import { getResourceDependence } from "../../src/api.ts";
import type { CommandDeclaration } from "../command.ts";
import { EXIT, UsageError } from "../errors.ts";
import { DEPENDENCIES_FILE } from "../flags.ts";
import { oneOperand } from "../format.ts";
import { printJson } from "../io.ts";

const FORMATS = ["list", "json", "dot", "mermaid"];

/**
 * A Graphviz graph from `host` to each host locked with it. Names are
 * quoted strings, so a keyword (`node`, `graph`) or any character is a name.
 */
export function dotGraph(host: string, hosts: readonly string[]): string {
  const id = (name: string) => `"${name.replace(/["\\]/g, (char) => `\\${char}`)}"`;
  return [
    "digraph dependencies {",
    ...hosts.length ? hosts.map((h) => `  ${id(host)} -> ${id(h)};`) : [`  ${id(host)};`],
    "}",
  ].join("\n");
}

/**
 * A Mermaid flowchart from `host` to each host locked with it. Node ids are
 * `n0`, `n1`, … (one per host, so `hv-01` and `hv_01` stay two nodes, and
 * no host name can be a keyword such as `end`); labels show the names,
 * quoted, with `"` written as `#quot;`.
 */
export function mermaidGraph(host: string, hosts: readonly string[]): string {
  const names = [host, ...hosts.filter((h) => h !== host)];
  const label = (name: string) => `"${name.replace(/"/g, "#quot;")}"`;
  return [
    "graph LR",
    ...names.map((name, i) => `  n${i}[${label(name)}]`),
    ...names.slice(1).map((_, i) => `  n0 --> n${i + 1}`),
  ].join("\n");
}

/** `deps <host>`. */
export const DEPS: CommandDeclaration = {
  name: "deps",
  operands: "<host>",
  summary: "hosts locked together with <host>",
  description: `Lists the hosts locked together with <host>, in the original's order: the
hosts <host> depends on in the dependency map, and theirs, and so on.`,
  flags: [
    DEPENDENCIES_FILE,
    { name: "format", value: "FORMAT", help: "output", choices: FORMATS, default: "list" },
  ],
  async handler({ operands, values, io, storeOptions }) {
    const host = oneOperand(operands, "host", "deps").toLowerCase();
    const format = typeof values.format === "string"
      ? values.format
      : values.json
      ? "json"
      : "list";
    if (!FORMATS.includes(format)) {
      throw new UsageError(
        `Invalid --format ${JSON.stringify(format)}: expected list, json, dot or mermaid`,
      );
    }
    const file = values["dependencies-file"];
    const hosts = await getResourceDependence(host, {
      ...storeOptions,
      ...typeof file === "string" ? { dependenciesFile: file } : {},
    });
    if (format === "json") printJson(io, { command: "deps", host, dependencies: hosts });
    else if (format === "dot") io.out(dotGraph(host, hosts));
    else if (format === "mermaid") io.out(mermaidGraph(host, hosts));
    else if (hosts.length) io.out(hosts.join("\n"));
    return EXIT.OK;
  },
};
