import { bytesContent, type ContentRef, type RootfsTree } from "../tree/index.js";
import { essentialFiles } from "./essential-files.js";
import { layoutDirectories, type GuestLayout } from "./guest-layout.js";

/**
 * Puts the A3S layer on a tree: the guest directories, the essential /etc
 * files and the agent. It goes on top of any source, so what a base image
 * had at these paths is replaced; everything is owned 0:0.
 */
export function applyGuestLayout(tree: RootfsTree, layout: GuestLayout, agent: ContentRef | undefined): void {
  for (const d of layoutDirectories(layout)) tree.addDirectory(d.path, { mode: d.mode });
  for (const f of essentialFiles(layout)) tree.addFile(f.path, bytesContent(f.content), { mode: 0o644 });
  for (const f of layout.extraFiles) tree.addFile(f.path, bytesContent(f.content), { mode: f.mode ?? 0o644 });
  if (agent) tree.addFile(layout.agentPath, agent, { mode: 0o755 });
}
