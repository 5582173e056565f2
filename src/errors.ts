/**
 * Errors are values: a stable code scripts can match on, a message for people,
 * and the thing that was wrong (a path inside the rootfs, a host file, a digest).
 */
export class A3sError extends Error {
  readonly code: string;
  /** The offending path, file or digest, when there is one. */
  readonly subject: string | undefined;
  /** What the user can do about it. */
  readonly hint: string | undefined;

  constructor(code: string, message: string, opts: { subject?: string; hint?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "A3sError";
    this.code = code;
    this.subject = opts.subject;
    this.hint = opts.hint;
  }
}

export function isA3sError(e: unknown, code?: string): e is A3sError {
  return e instanceof A3sError && (code === undefined || e.code === code);
}
