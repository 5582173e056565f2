import { RootfsTree } from "../tree/index.js";
import type { RootfsSource, SourceContext, SourceResult } from "./source.js";

/** `scratch`: an empty tree; the A3S layer on top is the whole rootfs. */
export const scratchSource: RootfsSource = {
  spec: "scratch",
  async load(ctx: SourceContext): Promise<SourceResult> {
    return { tree: new RootfsTree({ epoch: ctx.epoch }) };
  },
  identify: async () => "scratch",
};
