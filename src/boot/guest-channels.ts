import { createServer, type Server, type Socket } from "node:net";

/**
 * What a channel does with a chunk from the guest. Returning a promise
 * holds the channel until it settles: nothing more is read from the socket
 * meanwhile, so QEMU's end fills up and QEMU throttles the guest's port
 * (a virtserialport: the guest's writes wait). That is how a slow consumer
 * of the agent's output slows the agent instead of losing its bytes.
 */
export type ChannelSink = (chunk: Buffer) => Promise<void> | void;

/**
 * The host ends of the guest's channels (virtio-serial ports): one Unix
 * socket server per channel, listening before QEMU starts, so QEMU connects
 * as a client at start-up and no byte the guest writes early is lost.
 */
export class GuestChannel {
  private readonly server: Server;
  private socket: Socket | undefined;
  private readonly waiting: ((s: Socket) => void)[] = [];

  private constructor(readonly path: string, onData: ChannelSink) {
    this.server = createServer((sock) => {
      if (this.socket) {
        sock.destroy(); // one peer only: QEMU
        return;
      }
      this.socket = sock;
      sock.on("data", (chunk: Buffer) => {
        const held = onData(chunk);
        if (!held) return;
        sock.pause();
        const resume = (): void => void sock.resume();
        held.then(resume, resume);
      });
      sock.on("error", () => {
        // QEMU went away; its exit is handled by the runner.
      });
      for (const w of this.waiting.splice(0)) w(sock);
    });
  }

  static async listen(path: string, onData: ChannelSink): Promise<GuestChannel> {
    const ch = new GuestChannel(path, onData);
    await new Promise<void>((resolve, reject) => {
      ch.server.once("error", reject);
      ch.server.listen(path, () => resolve());
    });
    return ch;
  }

  /** Writes to the guest once QEMU has connected. */
  write(data: string): void {
    if (this.socket) this.socket.write(data);
    else this.waiting.push((s) => s.write(data));
  }

  close(): void {
    this.socket?.destroy();
    this.server.close();
  }
}
