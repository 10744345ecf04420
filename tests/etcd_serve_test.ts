/**
 * The serve suite (`_serve_suite.ts`) on the etcd store. Without etcd the
 * suite is skipped with a visible message; under CI its absence is a failure.
 *
 * @module
 */

import { registerServeSuite } from "./_serve_suite.ts";
import { etcdTemplate, etcdTestGate, fileEtcd } from "./_etcd.ts";

const gate = await etcdTestGate();
const etcd = await fileEtcd(gate);
let next = 0;

registerServeSuite("etcd", () => {
  if (!etcd) throw new Error("no etcd");
  return Promise.resolve({
    store: etcdTemplate(etcd, `/serve-${next++}`),
    [Symbol.asyncDispose]: () => Promise.resolve(),
  });
}, { ignore: gate.ignore });
