/**
 * etcd sections of the benchmark (filled in with the etcd store).
 *
 * @module
 */

import type { Figure } from "./_measure.ts";
import type { SectionContext } from "./_smb.ts";

/** etcd figures; none until the etcd store is benchmarked. */
export function etcdSections(_context: SectionContext): Promise<Figure[]> {
  return Promise.resolve([]);
}
