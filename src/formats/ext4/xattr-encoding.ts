import { A3sError } from "../../errors.js";
import { EXT4_BLOCK_SIZE, INODE_XATTR_SPACE } from "./geometry.js";

/**
 * ext4's on-disk xattrs (fs/ext4/xattr.h): entries of a 16-byte header and
 * the name without its namespace prefix, which is stored as an index;
 * values aligned to 4 bytes at the far end of the region, growing down.
 * Both the space inside the inode (after its extra fields) and an external
 * block use this layout; the block adds a 32-byte header and its entries
 * must be sorted, as the kernel searches them in order.
 */

/** Namespace prefixes and their index, longest first so the most specific wins. */
const NAME_INDEXES: readonly (readonly [string, number])[] = [
  ["system.posix_acl_default", 3],
  ["system.posix_acl_access", 2],
  ["system.richacl", 8],
  ["security.", 6],
  ["trusted.", 4],
  ["system.", 7],
  ["user.", 1],
];

const XATTR_MAGIC = 0xea020000;
const ENTRY_HEADER = 16;
const BLOCK_HEADER = 32;

interface Entry {
  readonly index: number;
  readonly name: Buffer;
  readonly value: Buffer;
}

/** An inode's xattrs, laid out for the inode or for a block of their own. */
export interface EncodedXattrs {
  /** The bytes after the inode's extra fields (magic included), or undefined when there are none or they go to a block. */
  readonly inInode?: Buffer;
  /** Whether they need an external block (encodeXattrBlock writes it once its number is known). */
  readonly needsBlock: boolean;
  readonly entries: readonly Entry[];
}

/** The namespace index of an xattr name, and the prefix it stands for. */
function nameIndex(fullName: string): readonly [string, number] {
  return NAME_INDEXES.find(([p]) => fullName.startsWith(p)) ?? ["", 0];
}

/**
 * Bytes an inode's xattrs take in a region (entries, end marker, values),
 * for the size estimate: exact, but for POSIX ACLs, whose on-disk form is
 * never larger than the one counted here. A set over INODE_XATTR_SPACE
 * takes a block of its own.
 */
export function xattrRegionBytes(xattrs: ReadonlyMap<string, Uint8Array>): number {
  if (xattrs.size === 0) return 0;
  let total = 4;
  for (const [fullName, value] of xattrs) total += entryBytes(Buffer.byteLength(fullName) - nameIndex(fullName)[0].length, value.byteLength);
  return total;
}

export function encodeXattrs(xattrs: ReadonlyMap<string, Uint8Array>, subject: string): EncodedXattrs {
  if (xattrs.size === 0) return { needsBlock: false, entries: [] };
  const entries: Entry[] = [];
  for (const [fullName, value] of xattrs) {
    const [prefix, index] = nameIndex(fullName);
    const name = Buffer.from(fullName.slice(prefix.length), "utf8");
    if (name.length > 255) throw new A3sError("ETOOBIG", `the xattr name ${JSON.stringify(fullName)} is longer than ext4 allows`, { subject });
    const raw = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    entries.push({ index, name, value: index === 2 || index === 3 ? aclToDisk(raw, fullName, subject) : raw });
  }
  entries.sort((a, b) => a.index - b.index || a.name.length - b.name.length || Buffer.compare(a.name, b.name));
  const bytes = regionBytes(entries);
  if (bytes <= INODE_XATTR_SPACE) {
    const region = Buffer.alloc(4 + INODE_XATTR_SPACE);
    region.writeUInt32LE(XATTR_MAGIC, 0);
    fillRegion(region, 4, region.length, 4, entries);
    return { inInode: region, needsBlock: false, entries };
  }
  if (bytes > EXT4_BLOCK_SIZE - BLOCK_HEADER) {
    throw new A3sError("ETOOBIG", `the xattrs of ${subject} take ${bytes} bytes, more than one ext4 block holds`, {
      subject,
      hint: "use an erofs, squashfs or tar output for this tree",
    });
  }
  return { needsBlock: true, entries };
}

/** The xattr block at block number `blockNr`, with its hash and checksum. */
export function encodeXattrBlock(entries: readonly Entry[], blockNr: number, checksum: (block: Buffer, blockNr: number) => number): Buffer {
  const block = Buffer.alloc(EXT4_BLOCK_SIZE);
  block.writeUInt32LE(XATTR_MAGIC, 0);
  block.writeUInt32LE(1, 4); // h_refcount: this inode only
  block.writeUInt32LE(1, 8); // h_blocks
  const hashes = fillRegion(block, BLOCK_HEADER, EXT4_BLOCK_SIZE, 0, entries);
  // ext4_xattr_rehash: the block's hash folds its entries' hashes.
  let hash = 0;
  for (const h of hashes) hash = ((hash << 16) ^ (hash >>> 16) ^ h) >>> 0;
  block.writeUInt32LE(hash, 12);
  block.writeUInt32LE(checksum(block, blockNr), 16);
  return block;
}

/** Bytes the entries, their end marker and their values take. */
function regionBytes(entries: readonly Entry[]): number {
  let total = 4;
  for (const e of entries) total += entryBytes(e.name.length, e.value.length);
  return total;
}

/** One entry: its header, its name and its value, each name and value padded to 4 bytes. */
function entryBytes(nameLength: number, valueLength: number): number {
  return ENTRY_HEADER + roundUp4(nameLength) + roundUp4(valueLength);
}

/**
 * Writes entries from `from` and values down from `end` into `buf`; value
 * offsets count from `base` (the first entry in an inode, the block's start
 * in a block). Returns each entry's hash.
 */
function fillRegion(buf: Buffer, from: number, end: number, base: number, entries: readonly Entry[]): number[] {
  const hashes: number[] = [];
  let at = from;
  let valueEnd = end;
  for (const e of entries) {
    const valueAt = valueEnd - roundUp4(e.value.length);
    e.value.copy(buf, valueAt);
    valueEnd = valueAt;
    const hash = entryHash(e.name, buf.subarray(valueAt, valueAt + roundUp4(e.value.length)), e.value.length);
    buf[at] = e.name.length;
    buf[at + 1] = e.index;
    buf.writeUInt16LE(e.value.length === 0 ? 0 : valueAt - base, at + 2);
    buf.writeUInt32LE(0, at + 4); // e_value_inum: values are never in inodes of their own
    buf.writeUInt32LE(e.value.length, at + 8);
    buf.writeUInt32LE(hash, at + 12);
    e.name.copy(buf, at + ENTRY_HEADER);
    at += ENTRY_HEADER + roundUp4(e.name.length);
    hashes.push(hash);
  }
  // The 4 zero bytes after the last entry end the list (the buffer is zeroed).
  return hashes;
}

/** ext4_xattr_hash_entry: the name's bytes, then the value's 32-bit words (zero-padded). */
function entryHash(name: Buffer, paddedValue: Buffer, valueSize: number): number {
  let hash = 0;
  for (const c of name) hash = ((hash << 5) ^ (hash >>> 27) ^ c) >>> 0;
  if (valueSize > 0) {
    for (let i = 0; i < paddedValue.length; i += 4) hash = ((hash << 16) ^ (hash >>> 16) ^ paddedValue.readUInt32LE(i)) >>> 0;
  }
  return hash;
}

/** ACL tags whose entries carry an id (a user or group); the others are 4 bytes on disk. */
const ACL_USER = 0x02;
const ACL_GROUP = 0x08;

/**
 * A POSIX ACL as the xattr interface carries it (version 2, 8-byte entries
 * of tag, permissions and id) in ext4's on-disk form (version 1; the id
 * only for named users and groups), as the kernel and e2fsprogs convert it.
 */
function aclToDisk(value: Buffer, name: string, subject: string): Buffer {
  if (value.length < 4 || (value.length - 4) % 8 !== 0 || value.readUInt32LE(0) !== 2) {
    throw new A3sError("EFORMAT", `the ${name} xattr of ${subject} is not a POSIX ACL (version 2, 8-byte entries)`, { subject });
  }
  const out: Buffer[] = [Buffer.from([1, 0, 0, 0])];
  for (let at = 4; at < value.length; at += 8) {
    const tag = value.readUInt16LE(at);
    const withId = tag === ACL_USER || tag === ACL_GROUP;
    const e = Buffer.alloc(withId ? 8 : 4);
    e.writeUInt16LE(tag, 0);
    e.writeUInt16LE(value.readUInt16LE(at + 2), 2);
    if (withId) e.writeUInt32LE(value.readUInt32LE(at + 4), 4);
    out.push(e);
  }
  return Buffer.concat(out);
}

function roundUp4(n: number): number {
  return (n + 3) & ~3;
}
