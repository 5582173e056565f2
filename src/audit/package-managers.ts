/**
 * Package managers in a rootfs. With one, a compromised agent can install
 * any tool it lacks (a compiler, a scanner, a proxy); without one, it has
 * only what the image shipped. Keys are executable names, values the
 * manager they belong to, as reported in `packageManagers`.
 */
const PACKAGE_MANAGER_EXECUTABLES: ReadonlyMap<string, string> = new Map([
  ["apt", "apt"],
  ["apt-get", "apt"],
  ["aptitude", "apt"],
  ["dpkg", "dpkg"],
  ["apk", "apk"],
  ["rpm", "rpm"],
  ["yum", "yum"],
  ["dnf", "dnf"],
  ["dnf5", "dnf"],
  ["microdnf", "dnf"],
  ["tdnf", "dnf"],
  ["zypper", "zypper"],
  ["pacman", "pacman"],
  ["opkg", "opkg"],
  ["xbps-install", "xbps"],
  ["emerge", "portage"],
  ["nix-env", "nix"],
  ["pip", "pip"],
  ["pip3", "pip"],
]);

/** The package manager an executable's name belongs to, e.g. "apt-get" → "apt", "pip3.11" → "pip". */
export function packageManagerFor(name: string): string | undefined {
  return PACKAGE_MANAGER_EXECUTABLES.get(name) ?? (/^pip\d+(\.\d+)?$/.test(name) ? "pip" : undefined);
}
