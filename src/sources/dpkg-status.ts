import { readContent, type RootfsTree } from "../tree/index.js";

export interface InstalledPackage {
  readonly name: string;
  readonly version: string;
}

/** The packages dpkg lists as installed in a Debian tree (/var/lib/dpkg/status), sorted by name. */
export async function installedPackages(tree: RootfsTree): Promise<InstalledPackage[]> {
  const status = tree.lookup("/var/lib/dpkg/status");
  if (status?.kind !== "file") return [];
  const text = (await readContent(status.content, "/var/lib/dpkg/status")).toString("utf8");
  const out: InstalledPackage[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const field = (name: string): string | undefined => new RegExp(`^${name}: (.*)$`, "m").exec(stanza)?.[1]?.trim();
    const name = field("Package");
    const version = field("Version");
    if (name && version && /\binstalled$/.test(field("Status") ?? "")) out.push({ name, version });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
