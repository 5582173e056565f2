/**
 * The guest's control lines (docs/guest-protocol.md §7): "a3s EVENT FIELD...",
 * on the control channel, or prefixed "a3s-control: " on the console when the
 * channel is unavailable. Everything the guest writes is untrusted, so lines
 * are bounded and anything that does not parse is ignored.
 */
export type ControlEvent =
  | { kind: "init-start" | "root-ready" | "ready" | "job" | "agent-start" | "poweroff"; ms: number }
  /** output: the bytes of stdout and stderr init carried to the channels (protocol 2). */
  | { kind: "agent-exit"; ms: number; status: number; output?: { stdout: number; stderr: number } }
  | { kind: "signal"; ms: number; signal: number; source: string }
  | { kind: "error"; status: number; message: string }
  /** Overlay mode (docs/guest-protocol.md §8): the change set init wrote on the changes port, before agent-exit. */
  | { kind: "changes"; bytes: number; entries: number; skipped: number }
  | { kind: "changes-error"; message: string };

export const MAX_CONTROL_LINE = 4096;

export function parseControlLine(line: string): ControlEvent | undefined {
  if (line.length > MAX_CONTROL_LINE) return undefined;
  const m = /^a3s ([a-z-]+)(?: (.*))?$/.exec(line.replace(/\r$/, ""));
  if (!m) return undefined;
  const event = m[1] as string;
  const fields = (m[2] ?? "").split(" ");
  const num = (s: string | undefined): number | undefined => (s !== undefined && /^\d+(\.\d+)?$/.test(s) ? Number(s) : undefined);
  const count = (s: string | undefined): number | undefined => (s !== undefined && /^\d{1,15}$/.test(s) ? Number(s) : undefined);
  const ms = num(fields[0]);
  switch (event) {
    case "init-start":
    case "root-ready":
    case "ready":
    case "job":
    case "agent-start":
    case "poweroff":
      return ms === undefined ? undefined : { kind: event, ms };
    case "agent-exit": {
      const status = num(fields[1]);
      if (ms === undefined || status === undefined) return undefined;
      const stdout = count(fields[2]);
      const stderr = count(fields[3]);
      return stdout === undefined || stderr === undefined ? { kind: event, ms, status } : { kind: event, ms, status, output: { stdout, stderr } };
    }
    case "signal": {
      const signal = num(fields[1]);
      return ms === undefined || signal === undefined ? undefined : { kind: event, ms, signal, source: fields[2] ?? "" };
    }
    case "changes": {
      const [bytes, entries, skipped] = [count(fields[0]), count(fields[1]), count(fields[2])];
      return bytes === undefined || entries === undefined || skipped === undefined ? undefined : { kind: event, bytes, entries, skipped };
    }
    case "changes-error":
      return { kind: event, message: fields.join(" ") };
    case "error": {
      const status = num(fields[0]);
      return status === undefined ? undefined : { kind: event, status, message: fields.slice(1).join(" ") };
    }
    default:
      return undefined; // a later protocol version's event: ignored
  }
}

/** Control lines found in a console log ("a3s-control: a3s ..."). */
export function controlLinesInConsole(log: string): ControlEvent[] {
  const out: ControlEvent[] = [];
  for (const m of log.replace(/\r/g, "").matchAll(/^a3s-control: (a3s .*)$/gm)) {
    const ev = parseControlLine(m[1] as string);
    if (ev) out.push(ev);
  }
  return out;
}

/** Splits a byte stream into lines, bounding how much an unterminated line may buffer. */
export class LineSplitter {
  private pending = "";
  constructor(private readonly onLine: (line: string) => void) {}
  push(chunk: Buffer | string): void {
    this.pending += chunk.toString();
    let nl: number;
    while ((nl = this.pending.indexOf("\n")) >= 0) {
      this.onLine(this.pending.slice(0, nl));
      this.pending = this.pending.slice(nl + 1);
    }
    if (this.pending.length > MAX_CONTROL_LINE) this.pending = "";
  }
}
