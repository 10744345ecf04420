/**
 * A real lock cycle on the embedded local-folder store, in a temporary
 * folder: lock a host with its dependencies, show status, show that a
 * conflicting lock is refused, release, show history. Run: `deno task demo`.
 *
 * @module
 */

import { main } from "../cli.ts";

const root = await Deno.makeTempDir({ prefix: "resource-locker-demo-" });
const depsFile = `${root}/ResourceLocker-Dependencies.json`;
await Deno.writeTextFile(
  depsFile,
  JSON.stringify({ hv01: ["dc01", "vmm01"], dc01: ["dc02"], dc02: ["dc01"] }, null, 2),
);
await Deno.mkdir(`${root}/locks`);
const global = ["--store", `${root}/locks/{0}`];
const encoder = new TextEncoder();
let captured = "";
const io = {
  out: (text: string) => {
    captured += text + "\n";
    Deno.stdout.writeSync(encoder.encode(indent(text) + "\n"));
  },
  err: (text: string) => Deno.stdout.writeSync(encoder.encode(indent(text) + "\n")),
  stdin: () => Promise.resolve(captured),
};

function indent(text: string): string {
  return text.split("\n").map((line) => "    " + line).join("\n");
}

async function step(title: string, args: string[]): Promise<number> {
  const shown = args.map((arg) => (/\s/.test(arg) ? JSON.stringify(arg) : arg)).join(" ");
  console.log(`\n$ resource-locker ${shown}    # ${title}`);
  const code = await main([...args, ...global], io);
  console.log(`    (exit ${code})`);
  return code;
}

try {
  console.log(`Store: ${root}/locks/{0} (a temporary local folder)`);
  console.log(`Dependency map: ${await Deno.readTextFile(depsFile)}`);
  await step("hosts locked with dc01", ["deps", "dc01", "--file", depsFile]);
  captured = "";
  const locked = await step("reboot dc01: exclusive lock with its dependencies", [
    "lock",
    "dc01",
    "--hard",
    "--caller",
    "Invoke-Maintenance",
    "--description",
    "monthly patching",
    "--file",
    depsFile,
  ]);
  if (locked !== 0) {
    console.error("The demo could not lock dc01");
    Deno.exitCode = 1;
  }
  const refs = captured;
  await step("current locks", ["status", "dc01", "dc02", "hv01"]);
  await step("a deployment wants hv01: refused while dc01 is rebooting", [
    "lock",
    "hv01",
    "--caller",
    "Deploy-Image",
    "--no-dependencies",
    "--retries",
    "2",
    "--timeout",
    "200ms",
  ]);
  await step("is hv01 locked?", ["test", "hv01"]);
  captured = refs;
  await step("release what lock printed", ["unlock", "-"]);
  await step("is hv01 locked now?", ["test", "hv01"]);
  await step("released locks are kept as history", ["history", "dc01"]);
} finally {
  await Deno.remove(root, { recursive: true });
}
