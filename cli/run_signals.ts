/**
 * The signals `run` listens to, in its two phases. While it waits for the
 * lock, the first signal aborts the wait (nothing is locked); once the
 * command runs, every signal goes to the handler that stops the command's
 * tree. Signals `run` was started with ignored (`nohup`) stay ignored.
 *
 * @module
 */

import { InputError } from "../src/errors.ts";

const WINDOWS = Deno.build.os === "windows";

/** `run`'s signal listeners, from the start of the wait to the end of the command. */
export class RunSignals {
  readonly #interrupted = new AbortController();
  readonly #ignored: ReadonlySet<Deno.Signal>;
  readonly #removers: (() => void)[];
  #received: Deno.Signal | undefined;
  #onRunning: ((signal: Deno.Signal) => void) | undefined;

  /**
   * Starts listening.
   *
   * @param ignored the signals `run` was started with ignored (see `ignoredSignals`)
   */
  constructor(ignored: ReadonlySet<Deno.Signal>) {
    this.#ignored = ignored;
    const signals: Deno.Signal[] = WINDOWS
      ? ["SIGINT", "SIGBREAK"]
      : ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"];
    // Deno handles SIGHUP, SIGINT and SIGTERM from its first listener on, ignored or not:
    // those run was started with ignored are listened to and ignored; SIGQUIT is left alone.
    // Removing the last listener restores the default action (death), not the
    // ignore the process started with: those of ignored signals stay on after
    // close() (they do not keep the process alive), so a hang-up between
    // close() and the exit (stores closing, a release) is still ignored.
    this.#removers = signals.filter((signal) => signal !== "SIGQUIT" || !ignored.has(signal))
      .map((signal) => {
        const handler = () => this.#receive(signal);
        Deno.addSignalListener(signal, handler);
        return ignored.has(signal) ? () => {} : () => Deno.removeSignalListener(signal, handler);
      });
  }

  #receive(signal: Deno.Signal): void {
    if (this.#ignored.has(signal)) return;
    if (this.#onRunning) return this.#onRunning(signal);
    this.#received ??= signal;
    this.#interrupted.abort(new InputError(`Interrupted by ${signal} while waiting for the lock`));
  }

  /** Aborted by the first signal before the command runs: pass it to the wait for the lock. */
  get waiting(): AbortSignal {
    return this.#interrupted.signal;
  }

  /** The first signal received before the command ran. */
  get received(): Deno.Signal | undefined {
    return this.#received;
  }

  /** From now on (the command runs) every signal goes to `handler`. */
  whileRunning(handler: (signal: Deno.Signal) => void): void {
    this.#onRunning = handler;
  }

  /** Stops listening (signals ignored from the start stay ignored). */
  close(): void {
    this.#removers.forEach((remove) => remove());
  }
}
