import { A3sError } from "../errors.js";

/**
 * Runs a command's action: errors go to stderr as one clear message (with a
 * hint when there is one) and a non-zero exit status — 2 for usage errors,
 * 1 for everything else. Stack traces only with A3S_DEBUG=1.
 */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<number | void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      const code = await fn(...args);
      if (typeof code === "number") process.exitCode = code;
    } catch (e) {
      process.exitCode = reportError(e);
    }
  };
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
