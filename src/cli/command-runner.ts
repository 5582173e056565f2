import type { Command } from "commander";
import { constants } from "node:os";
import { A3sError } from "../errors.js";

/** What every command's action gets before its own arguments. */
export interface CommandContext {
  /**
   * Aborted when SIGINT, SIGTERM or SIGHUP arrives. Everything long-running
   * takes it (builds, downloads, VMs), stops, cleans up and rejects.
   */
  readonly signal: AbortSignal;
}

/** The signals that end a command, each with the exit status a shell gives a process it kills (128 + N). */
const ENDING_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
type EndingSignal = (typeof ENDING_SIGNALS)[number];

/**
 * Runs a command's action: errors go to stderr as one clear message (with a
 * hint when there is one) and a non-zero exit status — 2 for usage errors,
 * 1 for everything else. Stack traces only with A3S_DEBUG=1.
 *
 * This is the only place in a3s-rootfs that listens to process signals. A
 * signal aborts the action's AbortSignal; the action stops, every cleanup
 * it has pending runs (finally blocks: temporaries, staging copies, VMs),
 * and only then does the process exit, with 128 + the signal's number (130
 * for SIGINT, 143 for SIGTERM, 129 for SIGHUP), as if the signal had killed
 * it. A second signal while cleaning up exits at once, leaving whatever was
 * not yet cleaned.
 */
export function action<A extends unknown[]>(fn: (ctx: CommandContext, ...args: A) => Promise<number | void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    const interruption = new Interruption();
    try {
      const code = await fn({ signal: interruption.signal }, ...args);
      if (typeof code === "number") process.exitCode = code;
    } catch (e) {
      // A terminal's Ctrl-C reaches the whole process group: a host tool may die of it and
      // fail the action before this process's own SIGINT is dispatched. One turn of the event
      // loop lets a signal already delivered arrive, so the failure is reported as what it is.
      if (!interruption.received) await new Promise((resolve) => setImmediate(resolve));
      if (!interruption.received) process.exitCode = reportError(e);
      else if (process.env.A3S_DEBUG === "1") console.error(e);
    } finally {
      interruption.stopListening();
    }
    const received = interruption.received;
    if (received) {
      process.stderr.write(`a3s-rootfs: interrupted by ${received}; cleaned up\n`);
      process.exit(exitStatusFor(received));
    }
  };
}

/** The process's signal handlers for one command, turned into an AbortSignal. */
class Interruption {
  private readonly controller = new AbortController();
  received: EndingSignal | undefined;
  private readonly handlers = new Map<EndingSignal, () => void>();

  constructor() {
    for (const sig of ENDING_SIGNALS) {
      const handler = (): void => this.receive(sig);
      this.handlers.set(sig, handler);
      process.on(sig, handler);
    }
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  stopListening(): void {
    for (const [sig, handler] of this.handlers) process.off(sig, handler);
  }

  private receive(sig: EndingSignal): void {
    if (this.received) {
      process.stderr.write(`a3s-rootfs: ${sig} again: exiting without finishing the cleanup\n`);
      process.exit(exitStatusFor(this.received));
    }
    this.received = sig;
    process.stderr.write(`a3s-rootfs: ${sig}: stopping and cleaning up (send it again to exit at once)\n`);
    this.controller.abort(new A3sError("EINTERRUPTED", `interrupted by ${sig}`));
  }
}

function exitStatusFor(sig: EndingSignal): number {
  return 128 + constants.signals[sig];
}

export function reportError(e: unknown): number {
  if (process.env.A3S_DEBUG === "1") console.error(e);
  if (e instanceof A3sError) {
    process.stderr.write(`a3s-rootfs: error: ${e.message}\n`);
    if (e.hint) process.stderr.write(`a3s-rootfs: hint: ${e.hint}\n`);
    return e.code === "EUSAGE" ? 2 : 1;
  }
  const err = e as NodeJS.ErrnoException;
  process.stderr.write(`a3s-rootfs: error: ${err?.message ?? String(e)}\n`);
  return 1;
}

/**
 * Runs a check of values the user typed (a flag, a source spec): whatever it
 * rejects is a usage error (EUSAGE, exit 2) with the check's own message.
 * The library's codes (ELAYOUT, ECONFIG, EREFERENCE) say which rule failed;
 * on the command line every one of them means "you typed it wrong".
 */
export function usage<T>(check: () => T): T {
  try {
    return check();
  } catch (e) {
    if (e instanceof A3sError && e.code !== "EUSAGE") {
      throw new A3sError("EUSAGE", e.message, { ...(e.subject ? { subject: e.subject } : {}), ...(e.hint ? { hint: e.hint } : {}), cause: e });
    }
    throw e;
  }
}

/**
 * Records which of `names` (long option names without "--", "no-init"
 * included) were given on the command line. Commander gives a pair such as
 * --init/--no-init one value, the last one typed, so a contradiction would
 * otherwise pass silently; see `refuseBoth`.
 */
export function flagsGiven(cmd: Command, names: readonly string[]): Set<string> {
  const given = new Set<string>();
  for (const name of names) cmd.on(`option:${name}`, () => given.add(name));
  return given;
}

/** A usage error when both flags of a contradictory pair were given. */
export function refuseBoth(given: ReadonlySet<string>, a: string, b: string): void {
  if (given.has(a) && given.has(b)) {
    throw new A3sError("EUSAGE", `--${a} and --${b} contradict each other; give one of them`, { subject: `--${b}` });
  }
}

/** Collects a repeatable option's values. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** A flag value that must be one of `allowed`; anything else is a usage error. */
export function oneOf<T extends string>(flag: string, value: string | undefined, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(value)) {
    throw new A3sError("EUSAGE", `${flag} must be one of ${allowed.join(", ")}, got ${JSON.stringify(value)}`);
  }
  return value as T;
}

/** A flag's value as a positive number (`whole` for counts such as --cpus); a usage error otherwise. Undefined when not given. */
export function positiveNumber(flag: string, value: string | undefined, opts: { whole?: boolean } = {}): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (opts.whole ? !Number.isInteger(n) || n <= 0 : !Number.isFinite(n) || n <= 0) {
    throw new A3sError("EUSAGE", `${flag} must be a positive ${opts.whole ? "whole number" : "number"}, got ${JSON.stringify(value)}`);
  }
  return n;
}
