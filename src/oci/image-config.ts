import { A3sError } from "../errors.js";
import { parseDigest } from "./digest.js";
import { isObject, parseJsonObject } from "./json-document.js";

/** The parts of an OCI image config (image-spec config.md) this project reads. */
export interface OciImageConfig {
  readonly architecture: string;
  readonly os: string;
  readonly variant?: string;
  readonly config: OciContainerConfig;
  readonly rootfs: { readonly type: "layers"; readonly diff_ids: readonly string[] };
}

/** How a container of the image starts, the `config` object of the image config. */
export interface OciContainerConfig {
  readonly User?: string;
  readonly Env?: readonly string[];
  readonly Entrypoint?: readonly string[];
  readonly Cmd?: readonly string[];
  readonly WorkingDir?: string;
}

/** Largest config blob read into memory: real configs are a few kilobytes, a hostile one could be gigabytes. */
export const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

/**
 * Parses and validates an image config. Fields are checked for the types the
 * spec gives them, because everything after this trusts them: a config whose
 * diff_ids are not digests, or whose rootfs is not "layers", is refused here
 * rather than half-applied.
 */
export function parseImageConfig(json: Uint8Array | string, subject: string): OciImageConfig {
  const bytes = typeof json === "string" ? Buffer.from(json, "utf8") : json;
  const bad = (message: string): A3sError =>
    new A3sError("EIMAGE", `image config ${subject}: ${message}`, {
      subject,
      hint: "the image is malformed; rebuild it with a standard tool (docker, buildah, umoci)",
    });
  if (bytes.byteLength > MAX_CONFIG_BYTES) throw bad(`larger than ${MAX_CONFIG_BYTES} bytes`);
  const doc = parseJsonObject(bytes, bad);

  const architecture = doc.architecture;
  const os = doc.os;
  if (typeof architecture !== "string" || architecture === "") throw bad("missing architecture");
  if (typeof os !== "string" || os === "") throw bad("missing os");
  const variant = optionalString(doc, "variant", bad);

  const rootfs = doc.rootfs;
  if (!isObject(rootfs)) throw bad("missing rootfs");
  if (rootfs.type !== "layers") throw bad(`rootfs.type is ${JSON.stringify(rootfs.type)}, not "layers"`);
  if (!Array.isArray(rootfs.diff_ids)) throw bad("rootfs.diff_ids is not an array");
  const diffIds = rootfs.diff_ids.map((d: unknown, i) => {
    if (typeof d !== "string") throw bad(`rootfs.diff_ids[${i}] is not a string`);
    try {
      parseDigest(d);
    } catch (e) {
      throw bad(`rootfs.diff_ids[${i}]: ${(e as Error).message}`);
    }
    return d;
  });

  const c = doc.config ?? {};
  if (!isObject(c)) throw bad("config is not an object");
  const container: OciContainerConfig = {
    ...optionalField("User", optionalString(c, "User", bad)),
    ...optionalField("Env", optionalStrings(c, "Env", bad)),
    ...optionalField("Entrypoint", optionalStrings(c, "Entrypoint", bad)),
    ...optionalField("Cmd", optionalStrings(c, "Cmd", bad)),
    ...optionalField("WorkingDir", optionalString(c, "WorkingDir", bad)),
  };
  for (const e of container.Env ?? []) {
    if (!e.includes("=") || e.startsWith("=")) throw bad(`Env entry ${JSON.stringify(e)} is not NAME=VALUE`);
  }
  return {
    architecture,
    os,
    ...(variant === undefined ? {} : { variant }),
    config: container,
    rootfs: { type: "layers", diff_ids: diffIds },
  };
}

/** A string field; JSON null and absence both mean "not set", as Docker writes null for unset fields. */
function optionalString(o: Record<string, unknown>, key: string, bad: (m: string) => A3sError): string | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string" || v.includes("\0")) throw bad(`${key} is not a string`);
  return v;
}

function optionalStrings(o: Record<string, unknown>, key: string, bad: (m: string) => A3sError): string[] | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || !v.every((s) => typeof s === "string" && !s.includes("\0"))) {
    throw bad(`${key} is not an array of strings`);
  }
  return v as string[];
}

function optionalField<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}
