import { stat } from "node:fs/promises";
import { A3sError } from "../errors.js";
import { readElfFile } from "../formats/elf/index.js";
import { RootfsTree } from "../tree/index.js";
import { DOCTOR_HINT, findExecutable, runTool } from "../util/host-tool.js";
import type { RootfsSource, SourceContext, SourceResult } from "./source.js";

export type AppletLinks = "symlink" | "hardlink";

/** Where the binary goes; every applet name points at it. */
const BUSYBOX_PATH = "/bin/busybox";

/**
 * `busybox[:FILE]`: the scratch rootfs plus a static BusyBox and a link for
 * each of its applets, as `busybox --list-full` names them (bin/sh,
 * usr/bin/awk, ...). This is the "shell-enabled" rootfs: it has /bin/sh and
 * some 270 tools, everything the scratch rootfs deliberately leaves out.
 * The binary defaults to the host's busybox-static.
 */
export function busyboxSource(file: string, links: AppletLinks = "symlink"): RootfsSource {
  return {
    spec: file ? `busybox:${file}` : "busybox",
    async load(ctx: SourceContext): Promise<SourceResult> {
      const binary = file || findExecutable("busybox");
      if (!binary) {
        throw new A3sError("ETOOL", "no busybox binary: busybox-static is not installed", { hint: `apt-get install busybox-static, or give busybox:FILE   (${DOCTOR_HINT})` });
      }
      const st = await stat(binary).catch(() => undefined);
      if (!st?.isFile()) throw new A3sError("ENOENT", `${binary} is not a file`, { subject: binary });
      const elf = await readElfFile(binary);
      if (!elf?.isStatic) {
        throw new A3sError("EBUSYBOX", `${binary} is not a static executable; the rootfs has no libraries for it`, {
          subject: binary,
          hint: `use the static build: apt-get install busybox-static   (${DOCTOR_HINT})`,
        });
      }
      const applets = (await runTool(binary, ["--list-full"])).stdout.split("\n").map((l) => l.trim()).filter(Boolean);
      if (applets.length === 0) throw new A3sError("EBUSYBOX", `${binary} --list-full listed no applets`, { subject: binary });

      const tree = new RootfsTree({ epoch: ctx.epoch });
      tree.addFile(BUSYBOX_PATH, { type: "hostFile", path: binary, size: st.size }, { mode: 0o755 });
      for (const applet of applets) {
        const path = "/" + applet;
        if (path === BUSYBOX_PATH) continue;
        if (links === "hardlink") tree.addHardlink(path, BUSYBOX_PATH);
        else tree.addSymlink(path, BUSYBOX_PATH);
      }
      ctx.progress(`busybox: ${applets.length} applets as ${links}s to ${BUSYBOX_PATH}`);
      return { tree, report: { busybox: binary, applets: applets.length, links } };
    },
  };
}
