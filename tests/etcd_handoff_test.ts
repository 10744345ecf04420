/**
 * The handoff suite (`_handoff_suite.ts`) on the etcd store: waiters wake
 * through a watch from the revision they last read. Without etcd the suite
 * is skipped with a visible message; under CI its absence is a failure.
 *
 * @module
 */

import { registerHandoffSuite } from "./_handoff_suite.ts";
import { etcdTemplate, etcdTestGate, fileEtcd } from "./_etcd.ts";

const gate = await etcdTestGate();
const etcd = await fileEtcd(gate);
let next = 0;

registerHandoffSuite("etcd", () => {
  if (!etcd) throw new Error("no etcd");
  return Promise.resolve({
    store: etcdTemplate(etcd, `/handoff-${next++}`),
    [Symbol.asyncDispose]: () => Promise.resolve(),
  });
}, { ignore: gate.ignore });
