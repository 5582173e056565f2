/**
 * The directory-index hash ext4 files names under: half-MD4 over the name
 * in 32-byte pieces, seeded with the superblock's hash seed, in its
 * "unsigned" form (the name's bytes read as unsigned chars), which the
 * superblock announces with EXT2_FLAGS_UNSIGNED_HASH. Written from the
 * algorithm as the kernel's fs/ext4/hash.c defines it; e2fsck checks every
 * indexed directory against its own implementation, and the tests run it.
 */

const K2 = 0o13240474631;
const K3 = 0o15666365641;

/** The hash of `name` (low bit clear, as htree stores it) under `seed` (4 words; all zero means the default seed). */
export function halfMd4Hash(name: Uint8Array, seed: Uint32Array): number {
  const buf =
    seed[0] || seed[1] || seed[2] || seed[3]
      ? Uint32Array.from(seed)
      : Uint32Array.of(0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476);
  const words = new Uint32Array(8);
  for (let at = 0, len = name.length; ; at += 32, len -= 32) {
    nameToWords(name, at, len, words);
    halfMd4Transform(buf, words);
    if (len <= 32) break;
  }
  let hash = (buf[1] as number) & ~1;
  // 0x7fffffff << 1 marks the end of the index; no name may hash to it.
  if (hash >>> 0 === 0xfffffffe) hash = 0xfffffffc;
  return hash >>> 0;
}

/** str2hashbuf_unsigned: up to 32 bytes of the name from `at`, packed into 8 words, padded with the length. */
function nameToWords(name: Uint8Array, at: number, remaining: number, out: Uint32Array): void {
  // The pad is made of the whole remaining length, not this piece's, as the kernel does.
  let pad = (remaining | (remaining << 8)) >>> 0;
  pad = (pad | (pad << 16)) >>> 0;
  let val = pad;
  let n = 0;
  const len = Math.min(remaining, 32);
  for (let i = 0; i < len; i++) {
    val = ((name[at + i] as number) + ((val << 8) >>> 0)) >>> 0;
    if (i % 4 === 3) {
      out[n++] = val;
      val = pad;
    }
  }
  if (n < 8) out[n++] = val;
  while (n < 8) out[n++] = pad;
}

function rol(x: number, s: number): number {
  return ((x << s) | (x >>> (32 - s))) >>> 0;
}

function halfMd4Transform(buf: Uint32Array, x: Uint32Array): void {
  let a = buf[0] as number;
  let b = buf[1] as number;
  let c = buf[2] as number;
  let d = buf[3] as number;
  const F = (p: number, q: number, r: number): number => r ^ (p & (q ^ r));
  const G = (p: number, q: number, r: number): number => ((p & q) + ((p ^ q) & r)) >>> 0;
  const H = (p: number, q: number, r: number): number => p ^ q ^ r;
  const w = (i: number): number => x[i] as number;

  a = rol((a + F(b, c, d) + w(0)) >>> 0, 3);
  d = rol((d + F(a, b, c) + w(1)) >>> 0, 7);
  c = rol((c + F(d, a, b) + w(2)) >>> 0, 11);
  b = rol((b + F(c, d, a) + w(3)) >>> 0, 19);
  a = rol((a + F(b, c, d) + w(4)) >>> 0, 3);
  d = rol((d + F(a, b, c) + w(5)) >>> 0, 7);
  c = rol((c + F(d, a, b) + w(6)) >>> 0, 11);
  b = rol((b + F(c, d, a) + w(7)) >>> 0, 19);

  a = rol((a + G(b, c, d) + w(1) + K2) >>> 0, 3);
  d = rol((d + G(a, b, c) + w(3) + K2) >>> 0, 5);
  c = rol((c + G(d, a, b) + w(5) + K2) >>> 0, 9);
  b = rol((b + G(c, d, a) + w(7) + K2) >>> 0, 13);
  a = rol((a + G(b, c, d) + w(0) + K2) >>> 0, 3);
  d = rol((d + G(a, b, c) + w(2) + K2) >>> 0, 5);
  c = rol((c + G(d, a, b) + w(4) + K2) >>> 0, 9);
  b = rol((b + G(c, d, a) + w(6) + K2) >>> 0, 13);

  a = rol((a + H(b, c, d) + w(3) + K3) >>> 0, 3);
  d = rol((d + H(a, b, c) + w(7) + K3) >>> 0, 9);
  c = rol((c + H(d, a, b) + w(2) + K3) >>> 0, 11);
  b = rol((b + H(c, d, a) + w(6) + K3) >>> 0, 15);
  a = rol((a + H(b, c, d) + w(1) + K3) >>> 0, 3);
  d = rol((d + H(a, b, c) + w(5) + K3) >>> 0, 9);
  c = rol((c + H(d, a, b) + w(0) + K3) >>> 0, 11);
  b = rol((b + H(c, d, a) + w(4) + K3) >>> 0, 15);

  buf[0] = (buf[0] as number) + a;
  buf[1] = (buf[1] as number) + b;
  buf[2] = (buf[2] as number) + c;
  buf[3] = (buf[3] as number) + d;
}
