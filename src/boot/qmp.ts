import { createServer, type Server, type Socket } from "node:net";
import { A3sError } from "../errors.js";

/** One QMP event as QEMU sends it: `{"event": NAME, "data": {...}, "timestamp": {...}}`. */
export interface QmpEvent {
  readonly event: string;
  readonly data?: Record<string, unknown>;
}

/** Longest line QEMU's monitor may send us; anything longer is a broken peer. */
const MAX_LINE = 1 << 20;

/**
 * A client of QEMU's machine protocol (QMP), on a Unix socket this process
 * listens on and QEMU connects to (`-chardev socket,path=P` + `-mon
 * chardev=...,mode=control`), like the guest channels: listening first means
 * nothing QEMU says before we are ready is lost, and no socket QEMU created
 * has to be waited for.
 *
 * Commands are sent one at a time, in order; QMP answers them in order.
 * Events are not queued for later listeners: wait for an event
 * (waitForEvent) before sending the command that causes it, since the event
 * can arrive in the same read as the command's answer.
 */
export class QmpClient {
  private socket: Socket | undefined;
  private buffered = "";
  private readonly waiting: { resolve: (v: unknown) => void; reject: (e: Error) => void; command: string }[] = [];
  private readonly eventListeners = new Set<(e: QmpEvent) => void>();
  private greeted: Promise<void>;
  private onGreeting!: () => void;
  private closedError: Error | undefined;

  private constructor(private readonly server: Server) {
    this.greeted = new Promise((resolve) => (this.onGreeting = resolve));
  }

  /** Listens on `path`; QEMU is then started with a chardev that connects to it. */
  static async listen(path: string): Promise<QmpClient> {
    const server = createServer();
    const client = new QmpClient(server);
    server.on("connection", (s) => client.attach(s));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => resolve());
    });
    return client;
  }

  /** Waits for QEMU to connect and negotiates capabilities. */
  async ready(signal?: AbortSignal): Promise<void> {
    await abortable(this.greeted, signal, "QEMU's monitor never connected");
    await this.execute("qmp_capabilities");
  }

  /** Runs one command and resolves with its `return` value; a QMP error rejects. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.closedError) return Promise.reject(this.closedError);
    if (!this.socket) return Promise.reject(new A3sError("EQMP", `QMP ${command}: QEMU's monitor is not connected`));
    const socket = this.socket;
    return new Promise<T>((resolve, reject) => {
      this.waiting.push({ resolve: resolve as (v: unknown) => void, reject, command });
      socket.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + "\n");
    });
  }

  /** Resolves with the first event named `name` (optionally matching `test`) that arrives from now on. */
  waitForEvent(name: string, test: (e: QmpEvent) => boolean = () => true, signal?: AbortSignal): Promise<QmpEvent> {
    return abortable(
      new Promise<QmpEvent>((resolve, reject) => {
        const listener = (e: QmpEvent): void => {
          if (e.event === name && test(e)) {
            this.eventListeners.delete(listener);
            resolve(e);
          }
        };
        this.eventListeners.add(listener);
        if (this.closedError) reject(this.closedError);
      }),
      signal,
      `waiting for QEMU's ${name} event`,
    );
  }

  close(): void {
    this.fail(new A3sError("EQMP", "the QMP connection was closed"));
    this.socket?.destroy();
    this.server.close();
  }

  private attach(socket: Socket): void {
    if (this.socket) {
      socket.destroy();
      return;
    }
    this.socket = socket;
    socket.setEncoding("utf8");
    socket.on("data", (text: string) => this.receive(text));
    socket.on("close", () => this.fail(new A3sError("EQMP", "QEMU closed its monitor (it has exited)")));
    socket.on("error", () => {});
  }

  private receive(text: string): void {
    this.buffered += text;
    if (this.buffered.length > MAX_LINE && !this.buffered.includes("\n")) {
      this.fail(new A3sError("EQMP", "QEMU's monitor sent a line over 1 MiB"));
      this.socket?.destroy();
      return;
    }
    let nl: number;
    while ((nl = this.buffered.indexOf("\n")) >= 0) {
      const line = this.buffered.slice(0, nl).trim();
      this.buffered = this.buffered.slice(nl + 1);
      if (line) this.dispatch(line);
    }
  }

  private dispatch(line: string): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    if ("QMP" in msg) return this.onGreeting();
    if ("event" in msg) {
      for (const l of [...this.eventListeners]) l(msg as unknown as QmpEvent);
      return;
    }
    const pending = this.waiting.shift();
    if (!pending) return;
    if ("error" in msg) {
      const err = msg.error as { class?: string; desc?: string };
      pending.reject(new A3sError("EQMP", `QMP ${pending.command}: ${err.desc ?? "failed"} (${err.class ?? "error"})`));
    } else {
      pending.resolve(msg.return);
    }
  }

  private fail(e: Error): void {
    if (this.closedError) return;
    this.closedError = e;
    for (const w of this.waiting.splice(0)) w.reject(e);
  }
}

function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined, what: string): Promise<T> {
  if (!signal) return p;
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new A3sError("EABORTED", `interrupted while ${what}`));
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(e as Error);
      },
    );
  });
}
