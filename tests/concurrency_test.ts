import { assertEquals, assertOk } from "./_assert.ts";
import { runContention } from "./_contention.ts";
import { tempStore } from "./_helpers.ts";

Deno.test("processes contending for one host never hold a Host lock beside another lock", async () => {
  await using t = await tempStore();
  const workers = 4;
  const rounds = 30;
  const result = await runContention({ store: t.store, host: "hv01", workers, rounds });
  assertEquals(result.violations, []);
  assertEquals(result.codes, [0, 0, 0, 0]);
  assertEquals(result.acquired, workers * rounds, "every round accounted for");
  assertOk(result.hostRounds >= 30, `Host rounds: ${result.hostRounds}`);
  assertEquals(await t.files("hv01"), [], "no lock file left");
  assertEquals((await t.history("hv01")).length, workers * rounds, "every release in History");
});
