/**
 * SMB sections of the benchmark (filled in with the SMB store).
 *
 * @module
 */

import type { Figure } from "./_measure.ts";

/** What a section gets from the benchmark runner. */
export interface SectionContext {
  /** Few runs. */
  quick: boolean;
  /** Runs per figure. */
  runs: number;
  /** Temporary folder for the run. */
  root: string;
  /** Whether a figure id was asked for. */
  wants(id: string): boolean;
  /** The fan-out figure on any store. */
  fanOut(
    name: string,
    store: string,
    runs: number,
    env?: { config?: Record<string, unknown> },
  ): Promise<Figure[]>;
  /** The status-at-scale figure on any store. */
  statusAtScale(
    name: string,
    store: string,
    hosts: number,
    runs: number,
    options?: {
      config?: Record<string, unknown>;
      baseline?: (names: string[]) => Promise<unknown>;
    },
  ): Promise<Figure>;
}

/** SMB figures; none until the SMB store is benchmarked. */
export function smbSections(_context: SectionContext): Promise<Figure[]> {
  return Promise.resolve([]);
}
