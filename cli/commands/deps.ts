/**
 * `deps <host>`: the hosts locked together with a host, as a list, JSON, or
 * a graph for Graphviz (`dot`) or Mermaid.
 *
 * @module
 */

import { getMaintenanceGroups, getResourceDependence } from "../../src/api.ts";
import type { MaintenanceGroup } from "../../src/groups.ts";
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
export function dotGraph(
  host: string,
  hosts: readonly string[],
  groups: readonly MaintenanceGroup[] = [],
): string {
  const id = (name: string) => `"${name.replace(/["\\]/g, (char) => `\\${char}`)}"`;
  return [
    "digraph dependencies {",
    ...hosts.length ? hosts.map((h) => `  ${id(host)} -> ${id(h)};`) : [`  ${id(host)};`],
    ...groups.flatMap((g) => [
      `  subgraph ${id(`cluster_${g.name}`)} {`,
      `    label = ${id(`group ${g.name} (max ${g.max})`)};`,
      ...g.members.map((m) => `    ${id(m)};`),
      "  }",
    ]),
    "}",
  ].join("\n");
}

/**
 * A Mermaid flowchart from `host` to each host locked with it. Node ids are
 * `n0`, `n1`, … (one per host, so `hv-01` and `hv_01` stay two nodes, and
 * no host name can be a keyword such as `end`); labels show the names,
 * quoted, with `"` written as `#quot;`.
 */
export function mermaidGraph(
  host: string,
  hosts: readonly string[],
  groups: readonly MaintenanceGroup[] = [],
): string {
  const names = [host, ...hosts.filter((h) => h !== host)];
  for (const g of groups) for (const m of g.members) if (!names.includes(m)) names.push(m);
  const label = (name: string) => `"${name.replace(/"/g, "#quot;")}"`;
  const node = (name: string) => `n${names.indexOf(name)}`;
  return [
    "graph LR",
    ...names.map((name, i) => `  n${i}[${label(name)}]`),
    ...hosts.filter((h) => h !== host).map((h) => `  n0 --> ${node(h)}`),
    ...groups.flatMap((g, i) => [
      `  subgraph g${i}[${label(`group ${g.name} (max ${g.max})`)}]`,
      ...g.members.map((m) => `    ${node(m)}`),
      "  end",
    ]),
  ].join("\n");
}

/** `deps <host>`. */
export const DEPS: CommandDeclaration = {
  name: "deps",
  operands: "<host>",
  summary: "hosts locked together with <host>, and their groups",
  description: `Lists the hosts locked together with <host>, in the original's order: the
hosts <host> depends on in the dependency map, and theirs, and so on; one
per line. The maintenance groups a Host lock on them takes a slot of are
told on stderr (list), or in the JSON, dot and mermaid forms.`,
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
    // The groups a Host lock on these hosts takes a slot of.
    const locked = [...hosts, host];
    const groups = (await getMaintenanceGroups({
      ...storeOptions,
      ...typeof file === "string" ? { dependenciesFile: file } : {},
    })).filter((g) => g.members.some((m) => locked.includes(m)));
    const inGroup = (g: MaintenanceGroup) => g.members.filter((m) => locked.includes(m));
    if (format === "json") {
      printJson(io, {
        command: "deps",
        host,
        dependencies: hosts,
        groups: groups.map((g) => ({
          name: g.name,
          max: g.max,
          members: g.members,
          home: g.home ?? null,
          locked: inGroup(g),
        })),
      });
    } else if (format === "dot") io.out(dotGraph(host, hosts, groups));
    else if (format === "mermaid") io.out(mermaidGraph(host, hosts, groups));
    else {
      if (hosts.length) io.out(hosts.join("\n"));
      // Told on stderr: stdout stays one host per line for scripts.
      if (!values.quiet) {
        for (const g of groups) {
          io.err(
            `Group "${g.name}" (at most ${g.max} of ${
              g.members.join(", ")
            } in maintenance at once): a Host lock takes a slot for ${inGroup(g).join(", ")}`,
          );
        }
      }
    }
    return EXIT.OK;
  },
};
