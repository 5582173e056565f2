/**
 * Private keys baked into a rootfs. Everyone who can read the image can read
 * them, so a host key, a TLS key or a deploy key left in a layer is a leaked
 * secret (the classic "ssh host keys in the base image" problem, where every
 * VM from one image shares a host key and anyone can impersonate it).
 */

/** Files larger than this are not scanned: key files are a few KiB, bundles a few tens. */
export const KEY_SCAN_MAX_BYTES = 16 * 1024;
/** A PEM private key cannot be shorter than its two armour lines. */
export const KEY_SCAN_MIN_BYTES = 60;

const MARKER = Buffer.from("PRIVATE KEY");

/**
 * A PEM block whose label ends in "PRIVATE KEY" (PKCS#1 "RSA PRIVATE KEY",
 * SEC1 "EC PRIVATE KEY", PKCS#8 "PRIVATE KEY" and "ENCRYPTED PRIVATE KEY",
 * OpenSSH's "OPENSSH PRIVATE KEY", "DSA PRIVATE KEY"...) or a PGP private
 * key block, with its matching END line and only armour lines in between
 * (base64, and RFC 1421 headers such as "Proc-Type: 4,ENCRYPTED").
 * Requiring the whole block keeps source code and documentation that merely
 * mention the marker out of the report.
 */
const PEM_KEY =
  /-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?)-----\r?\n(?:[A-Za-z0-9+/=:,. -]*\r?\n){1,400}?-----END \1-----/;

/** The PEM label of the first private key in `data`, or undefined. */
export function findPrivateKey(data: Buffer): string | undefined {
  if (data.indexOf(MARKER) < 0) return undefined;
  const m = PEM_KEY.exec(data.toString("latin1"));
  return m?.[1];
}
