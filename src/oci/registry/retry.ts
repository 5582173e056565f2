import { setTimeout as sleep } from "node:timers/promises";

/** How hard to try before a registry failure becomes the user's error. */
export interface RetryPolicy {
  /** Tries in all, the first included. */
  readonly attempts: number;
  /** The first backoff; each later one doubles, with jitter. */
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  /** The longest Retry-After we wait; a registry asking for more is an error, not a hang. */
  readonly maxRetryAfterMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 5, baseDelayMs: 400, maxDelayMs: 8_000, maxRetryAfterMs: 60_000 };

/** Statuses that say "not now" rather than "no": rate limits and server trouble. 501 is a permanent "no". */
export function isRetriableStatus(status: number): boolean {
  return status === 408 || status === 429 || (status >= 500 && status <= 599 && status !== 501 && status !== 505);
}

const RETRIABLE_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "ENETUNREACH",
  "EHOSTUNREACH",
  "EAI_AGAIN",
  "UND_ERR_SOCKET",
  "ERR_STREAM_PREMATURE_CLOSE",
]);

/** Network failures worth another try: resets, timeouts, a body cut short. */
export function isRetriableNetworkError(e: unknown): boolean {
  const err = e as { code?: string; message?: string } | undefined;
  if (err?.code && RETRIABLE_CODES.has(err.code)) return true;
  return err?.message === "aborted" || err?.message === "socket hang up";
}

/**
 * Parses Retry-After: delta seconds or an HTTP date. Undefined when absent or
 * unreadable (then ordinary backoff applies).
 */
export function parseRetryAfter(header: string | undefined, now = Date.now()): number | undefined {
  if (header === undefined) return undefined;
  const text = header.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const when = Date.parse(text);
  return Number.isNaN(when) ? undefined : Math.max(0, when - now);
}

/** The wait before try number `attempt + 1` (attempt counts from 1): exponential with full jitter, capped. */
export function backoffDelay(attempt: number, policy: RetryPolicy): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  // Jitter keeps concurrent layer downloads from hammering a rate-limited registry in lock-step.
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

export { sleep };
