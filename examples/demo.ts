/**
 * A real lock cycle on the embedded local-folder store, in a temporary
 * folder: lock a host with its dependencies, show status, show that a
 * conflicting lock is refused, release, show history. Run: `deno task demo`.
 *
 * The dependency map reads as the README's: each host lists the hosts that
 * depend on it, and locking one of those locks it too. hv01 is a hypervisor
 * running vm01 and dc01; dc01 and dc02 list each other, so the two domain
 * controllers are never down together.
 *
 * @module
 */

import { main } from "../cli.ts";

const root = await Deno.makeTempDir({ prefix: "resource-locker-demo-" });
const depsFile = `${root}/ResourceLocker-Dependencies.json`;
await Deno.writeTextFile(
  depsFile,
  JSON.stringify({ hv01: ["vm01", "dc01"], dc01: ["dc02"], dc02: ["dc01"] }, null, 2),
);
// The map by environment, as a script would set it (RESOURCE_LOCKER_DEPENDENCIES).
Deno.env.set("RESOURCE_LOCKER_DEPENDENCIES", depsFile);
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
  console.log(`RESOURCE_LOCKER_DEPENDENCIES=${depsFile}:`);
  console.log(indent(await Deno.readTextFile(depsFile)));
  console.log("Each host lists the hosts that depend on it; locking one of those locks it too.");
  await step("vm01 runs on hv01: locking vm01 locks hv01 too", ["deps", "vm01"]);
  await step("hv01 is in nobody's list: locking it locks only hv01, not its VMs", ["deps", "hv01"]);
  await step("dc01 runs on hv01, and the other domain controller must stay up", ["deps", "dc01"]);
  captured = "";
  const locked = await step("reboot dc01: exclusive locks on dc01 and the hosts locked with it", [
    "lock",
    "dc01",
    "--hard",
    "--caller",
    "Invoke-Maintenance",
    "--description",
    "monthly patching",
  ]);
  if (locked !== 0) {
    console.error("The demo could not lock dc01");
    Deno.exitCode = 1;
  }
  const refs = captured;
  await step("current locks", ["status", "dc01", "dc02", "hv01", "vm01"]);
  await step("patching hv01 must wait while dc01, which runs on it, is rebooting", [
    "lock",
    "hv01",
    "--hard",
    "--caller",
    "Patch-Hypervisor",
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
