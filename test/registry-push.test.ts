// Pushing to a real registry on loopback (Debian's docker-registry), with
// htpasswd and token auth, behind a recording proxy that injects failures:
// what is pushed pulls back with the same digests, skopeo reads it, nothing
// the registry has is sent again, a blob another repository has is mounted,
// and an interrupted push resumes or restarts and never leaves a tag that
// names missing blobs.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { isA3sError } from "../src/errors.js";
import type { LocalImage } from "../src/oci/local-image.js";
import { parsePlatform } from "../src/oci/platform.js";
import { parseReference } from "../src/oci/reference.js";
import { BlobLocations } from "../src/oci/registry/blob-locations.js";
import { RegistryClient, type RegistryClientOptions } from "../src/oci/registry/client.js";
import type { RegistryCredentials } from "../src/oci/registry/credentials.js";
import { pushImage, type PushOptions, type PushResult } from "../src/oci/registry/push.js";
import { ContentStore } from "../src/oci/store/content-store.js";
import { writeOciImage } from "../src/outputs/oci-image.js";
import { bytesContent, RootfsTree } from "../src/tree/index.js";
import { CLI, runCliAsync } from "./helpers/cli.js";
import { startFaultProxy, type FaultProxy } from "./helpers/fault-proxy.js";
import { patternBytes } from "./helpers/image-sample.js";
import { startRegistry, type TestRegistry } from "./helpers/registry.js";
import { compileTestBinary } from "./helpers/static-binary.js";
import { tempDir } from "./helpers/temp-dir.js";
import { startTokenServer, type TokenServer } from "./helpers/token-server.js";

const AMD64 = parsePlatform("linux/amd64");
const USER = { username: "alice", password: "s3cret:with:colons" };
const FAST_RETRY = { baseDelayMs: 10, maxDelayMs: 50 };

let open: TestRegistry;
let basic: TestRegistry;
let tokenRegistry: TestRegistry;
let tokens: TokenServer;
let proxy: FaultProxy;
const stops: (() => Promise<void>)[] = [];

before(async () => {
  open = await startRegistry();
  stops.push(open.stop);
  proxy = await startFaultProxy(open.url);
  stops.push(proxy.stop);
  basic = await startRegistry({ storage: open.storage, auth: { htpasswd: { [USER.username]: USER.password } } });
  stops.push(basic.stop);
  tokens = await startTokenServer({ users: { [USER.username]: USER.password } });
  stops.push(tokens.stop);
  tokenRegistry = await startRegistry({ storage: open.storage, auth: { token: tokens } });
  stops.push(tokenRegistry.stop);
});

after(async () => {
  for (const stop of stops.reverse()) await stop();
});

/** A small rootfs whose one big file (incompressible, `seed` makes it unique) spans several upload chunks. */
function tree(seed: number, bigBytes = 400_000): RootfsTree {
  const t = new RootfsTree({ epoch: 0 });
  t.addDirectory("/", { mtime: 0 });
  t.addFile("/data/big.bin", bytesContent(patternBytes(bigBytes, seed)), { mtime: 0 });
  t.addFile("/etc/a3s/guest.conf", bytesContent("a3s-guest-config 1\nagent=/data/big.bin\n"), { mtime: 0 });
  return t;
}

async function image(t: RootfsTree): Promise<LocalImage> {
  return writeOciImage(t, { epoch: 0, layerDir: tempDir() });
}

function client(extra: RegistryClientOptions = {}): RegistryClient {
  return new RegistryClient({ store: new ContentStore(tempDir()), credentialLookup: async () => undefined, retry: FAST_RETRY, ...extra });
}

async function push(img: LocalImage, reference: string, opts: PushOptions & { client?: RegistryClient; credentials?: RegistryCredentials } = {}): Promise<PushResult> {
  const c = opts.client ?? client(opts.credentials ? { credentials: opts.credentials } : {});
  return pushImage(c, parseReference(reference), img, opts);
}

/** Pulls `reference` back with our client and checks every digest against the image that was pushed. */
async function assertPullsBack(reference: string, img: LocalImage, extra: RegistryClientOptions = {}): Promise<void> {
  const c = client(extra);
  const ref = parseReference(reference);
  const r = await c.resolve(ref, AMD64);
  assert.equal(r.manifestDigest, img.manifest.descriptor.digest);
  assert.deepEqual(
    [r.manifest.config, ...r.manifest.layers].map((d) => d.digest),
    img.blobs.map((b) => b.descriptor.digest),
  );
  for (const layer of r.manifest.layers) await c.fetchBlob(ref, layer);
}

/** What the proxy saw since `from`: "METHOD path-shape status". */
function requestsSince(from: number): string[] {
  return proxy.log.slice(from).map((e) => `${e.method} ${e.path.replace(/\?.*$/, "").replace(/uploads\/[0-9a-f-]+/, "uploads/ID")} ${e.status}`);
}

const code = (c: string, text?: RegExp) => (e: unknown) => {
  assert.ok(isA3sError(e, c), `expected ${c}, got ${String((e as Error)?.stack ?? e)}`);
  if (text) assert.match(e.message + " " + (e.hint ?? ""), text);
  return true;
};

describe("pushing: the CLI end to end", () => {
  const agent = compileTestBinary();
  const cache = tempDir();
  const env = { SOURCE_DATE_EPOCH: "0", A3S_CACHE_DIR: cache };
  const build = async (outputs: string[]): Promise<{ status: number | null; stderr: string; outputs: { path: string; digest: string; reference: string; pushed: Record<string, unknown> }[] }> => {
    const r = await runCliAsync(["build", "--agent", agent, ...outputs.flatMap((o) => ["-o", o]), "--json"], { env });
    return { status: r.status, stderr: r.stderr, outputs: r.status === 0 ? (JSON.parse(r.stdout) as { outputs: [] }).outputs : [] };
  };

  it("pushes the rootfs as an OCI image; our client and skopeo pull it back with the digest --json reported", async () => {
    const r = await build([`docker://${proxy.host}/cli/app:v1`]);
    assert.equal(r.status, 0, r.stderr);
    const out = r.outputs[0]!;
    assert.match(out.digest, /^sha256:[0-9a-f]{64}$/);
    assert.equal(out.reference, `${proxy.host}/cli/app:v1@${out.digest}`);
    assert.deepEqual(out.pushed, { uploaded: 2, mounted: 0, existing: 0, uploadedBytes: out.pushed.uploadedBytes, manifest: "put" });
    const c = client();
    const resolved = await c.resolve(parseReference(`${open.host}/cli/app:v1`), AMD64);
    assert.equal(resolved.manifestDigest, out.digest);
    const info = JSON.parse(execFileSync("skopeo", ["inspect", "--tls-verify=false", `docker://${open.host}/cli/app:v1`], { encoding: "utf8" })) as { Digest: string; Labels: Record<string, string> };
    assert.equal(info.Digest, out.digest);
    assert.equal(info.Labels["vnd.a3s.rootfs.layout.version"], "2");
    // skopeo copies it into a layout, blobs and all (it verifies every digest as it goes).
    const copy = join(tempDir(), "copy");
    execFileSync("skopeo", ["copy", "--quiet", "--src-tls-verify=false", `docker://${open.host}/cli/app:v1`, `oci:${copy}:v1`]);
    // And our own docker:// source builds from it.
    const again = await runCliAsync(["build", `docker://${open.host}/cli/app:v1`, "-o", `tar:${join(tempDir(), "back.tar")}`], { env: { A3S_CACHE_DIR: tempDir() } });
    assert.equal(again.status, 0, again.stderr);
  });

  it("pushing the same build twice uploads nothing the second time: a HEAD per blob and one for the tag", async () => {
    const first = await build([`docker://${proxy.host}/cli/twice:v1`]);
    assert.equal(first.status, 0, first.stderr);
    const mark = proxy.log.length;
    const second = await build([`docker://${proxy.host}/cli/twice:v1`]);
    assert.equal(second.status, 0, second.stderr);
    assert.equal(second.outputs[0]!.digest, first.outputs[0]!.digest);
    assert.deepEqual(second.outputs[0]!.pushed, { uploaded: 0, mounted: 0, existing: 2, uploadedBytes: 0, manifest: "existing" });
    const sent = requestsSince(mark).filter((l) => !l.startsWith("HEAD") && !l.startsWith("GET /v2/ "));
    assert.deepEqual(sent, []);
  });

  it("mounts blobs another repository of the registry holds instead of uploading them (counted at the proxy)", async () => {
    const mark = proxy.log.length;
    const r = await build([`docker://${proxy.host}/mount/a:v1`, `docker://${proxy.host}/mount/b:v1`]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.outputs[1]!.digest, r.outputs[0]!.digest);
    assert.deepEqual(r.outputs[1]!.pushed, { uploaded: 0, mounted: 2, existing: 0, uploadedBytes: 0, manifest: "put" });
    const toB = proxy.log.slice(mark).filter((e) => e.path.startsWith("/v2/mount/b/"));
    const mounts = toB.filter((e) => e.method === "POST" && /mount=sha256%3A[0-9a-f]{64}&from=mount%2Fa/.test(e.path));
    assert.equal(mounts.length, 2);
    assert.ok(mounts.every((e) => e.status === 201));
    assert.deepEqual(
      toB.filter((e) => e.method === "PUT" || e.method === "PATCH").map((e) => e.path.replace(/\?.*/, "")),
      ["/v2/mount/b/manifests/v1"],
      "no blob data went to mount/b",
    );
  });

  it("pushes a build killed part way again: the tag never named missing blobs, and the second push completes it", async () => {
    const reference = `${proxy.host}/killed/app:v1`;
    proxy.faults = { delayUploadsMs: 10_000 };
    // A cache of its own: no mount hints, so the blobs are uploaded (and held by the proxy).
    // And a TMPDIR of its own: the killed build cannot remove its scratch directory.
    const fresh = { ...env, A3S_CACHE_DIR: tempDir(), TMPDIR: tempDir() };
    const child = spawn(process.execPath, [CLI, "build", "--agent", agent, "-o", `docker://${reference}`], { env: { ...process.env, ...fresh }, stdio: "ignore" });
    try {
      // Wait until an upload is under way (held by the proxy), then kill the push where it stands.
      const mark = proxy.log.length;
      for (let i = 0; i < 200 && !proxy.log.slice(mark).some((e) => e.method === "POST" && e.path.includes("/killed/app/blobs/uploads/")); i++) await sleep(50);
      child.kill("SIGKILL");
      await new Promise((r) => child.once("exit", r));
    } finally {
      proxy.faults = {};
    }
    const tag = await fetch(`${open.url}/v2/killed/app/manifests/v1`, { method: "HEAD", headers: { accept: "application/vnd.oci.image.manifest.v1+json" } });
    assert.equal(tag.status, 404, "no manifest was put before its blobs");
    const r = await build([`docker://${reference}`]);
    assert.equal(r.status, 0, r.stderr);
    const manifest = (await (await fetch(`${open.url}/v2/killed/app/manifests/v1`, { headers: { accept: "application/vnd.oci.image.manifest.v1+json" } })).json()) as {
      config: { digest: string };
      layers: { digest: string }[];
    };
    for (const d of [manifest.config, ...manifest.layers]) {
      assert.equal((await fetch(`${open.url}/v2/killed/app/blobs/${d.digest}`, { method: "HEAD" })).status, 200, d.digest);
    }
  });

  it("needs credentials to push to a registry that asks for them, and says so", async () => {
    const denied = await runCliAsync(["build", "--agent", agent, "-o", `docker://${basic.host}/auth/app:v1`], { env: { ...env, DOCKER_CONFIG: tempDir() } });
    assert.equal(denied.status, 1);
    assert.match(denied.stderr, /refused an anonymous push to auth\/app/);
    assert.match(denied.stderr, /--creds USER:PASSWORD/);
    const ok = await runCliAsync(["build", "--agent", agent, "--creds", `${USER.username}:${USER.password}`, "-o", `docker://${basic.host}/auth/app:v1`, "--json"], {
      env: { ...env, DOCKER_CONFIG: tempDir() },
    });
    assert.equal(ok.status, 0, ok.stderr);
  });

  it("inspect docker://REF of an artifact in a registry that asks for a login takes --creds", async () => {
    const clean = { ...env, DOCKER_CONFIG: tempDir() };
    const creds = `${USER.username}:${USER.password}`;
    const ref = `docker://${basic.host}/auth/boot:erofs`;
    const pushed = await runCliAsync(["build", "--agent", agent, "--creds", creds, "-o", `erofs:${ref}`], { env: clean });
    assert.equal(pushed.status, 0, pushed.stderr);
    const anonymous = await runCliAsync(["inspect", "--list", "--json", ref], { env: { ...clean, A3S_CACHE_DIR: tempDir() } });
    assert.equal(anonymous.status, 1);
    assert.match(anonymous.stderr, /refused an anonymous pull/);
    const listed = await runCliAsync(["inspect", "--list", "--json", "--creds", creds, ref], { env: { ...clean, A3S_CACHE_DIR: tempDir() } });
    assert.equal(listed.status, 0, listed.stderr);
    const paths = (JSON.parse(listed.stdout) as { list: { path: string }[] }).list.map((e) => e.path);
    assert.ok(paths.includes("/etc/a3s/guest.conf"), paths.join(" "));
  });

  it("pushes with the credentials docker's config gives: a credential helper for Basic, an auths entry for a token registry", async () => {
    const dir = tempDir();
    const asked = join(dir, "asked");
    writeFileSync(
      join(dir, "docker-credential-a3spush"),
      `#!/bin/sh\n[ "$1" = get ] || exit 3\nread server\necho "$server" >> ${asked}\n` +
        `printf '{"ServerURL":"%s","Username":"${USER.username}","Secret":"${USER.password}"}' "$server"\n`,
    );
    chmodSync(join(dir, "docker-credential-a3spush"), 0o755);
    const auth = Buffer.from(`${USER.username}:${USER.password}`).toString("base64");
    writeFileSync(join(dir, "config.json"), JSON.stringify({ credHelpers: { [basic.host]: "a3spush" }, auths: { [tokenRegistry.host]: { auth } } }));
    const withConfig = { ...env, DOCKER_CONFIG: dir, PATH: `${dir}:${process.env.PATH}` };
    const helped = await runCliAsync(["build", "--agent", agent, "-o", `docker://${basic.host}/cfg/basic:v1`, "--json"], { env: withConfig });
    assert.equal(helped.status, 0, helped.stderr);
    assert.match(readFileSync(asked, "utf8"), new RegExp(`^${basic.host}\n`));
    const mark = tokens.requests.length;
    const tokened = await runCliAsync(["build", "--agent", agent, "-o", `docker://${tokenRegistry.host}/cfg/tok:v1`, "--json"], { env: withConfig });
    assert.equal(tokened.status, 0, tokened.stderr);
    const pushScopes = tokens.requests.slice(mark).filter((r) => r.user === USER.username).flatMap((r) => r.scopes);
    assert.ok(pushScopes.includes("repository:cfg/tok:pull,push"), pushScopes.join(" "));
    const digest = (JSON.parse(tokened.stdout) as { outputs: { digest: string }[] }).outputs[0]!.digest;
    const resolved = await client({ credentials: USER }).resolve(parseReference(`${tokenRegistry.host}/cfg/tok:v1`), AMD64);
    assert.equal(resolved.manifestDigest, digest);
  });
});

describe("pushing: uploads", () => {
  it("uploads a blob larger than the chunk size in PATCHes with Content-Range, then closes it with the digest", async () => {
    const img = await image(tree(1));
    const mark = proxy.log.length;
    const result = await push(img, `${proxy.host}/chunks/app:v1`, { chunkBytes: 64 * 1024 });
    const patches = requestsSince(mark).filter((l) => l.startsWith("PATCH"));
    const layerBytes = img.blobs[1]!.descriptor.size;
    assert.equal(patches.length, Math.ceil(layerBytes / (64 * 1024)));
    assert.ok(patches.every((l) => l.endsWith(" 202")));
    assert.equal(result.uploadedBytes, img.blobs.reduce((n, b) => n + b.descriptor.size, 0));
    await assertPullsBack(`${open.host}/chunks/app:v1`, img);
  });

  it("a mount the registry declines (it answers 202) becomes an upload in the session it opened", async () => {
    const img = await image(tree(2));
    const store = new ContentStore(tempDir());
    const c = client({ store });
    // A stale hint: this host believes mount/none holds the blobs; the registry does not.
    for (const b of img.blobs) await c.locations.record(proxy.host, "mount/none", b.descriptor.digest);
    const mark = proxy.log.length;
    const result = await push(img, `${proxy.host}/declined/app:v1`, { client: c });
    assert.deepEqual([result.uploaded, result.mounted], [2, 0]);
    const seen = requestsSince(mark);
    assert.equal(seen.filter((l) => l.startsWith("POST /v2/declined/app/blobs/uploads/ 202")).length, 2, seen.join("\n"));
    // Two POSTs in all: the declined mounts' sessions were used, none was opened besides.
    assert.equal(seen.filter((l) => l.startsWith("POST")).length, 2);
    await assertPullsBack(`${open.host}/declined/app:v1`, img);
    // The next push to a third repository mounts from where the blobs really are now.
    assert.deepEqual(await new BlobLocations(join(store.root, "sources")).repositories(proxy.host, img.blobs[1]!.descriptor.digest), ["mount/none", "declined/app"]);
    const third = await push(img, `${proxy.host}/declined/third:v1`, { client: client({ store }) });
    assert.equal(third.mounted, 2);
  });

  it("an upload cut mid-body is started again in a new session, and the push completes", async () => {
    const img = await image(tree(3));
    proxy.faults = { cutUploads: { afterBytes: 100_000, times: 1, method: "PUT" } };
    try {
      const result = await push(img, `${proxy.host}/cut/app:v1`);
      assert.equal(result.restarts, 1);
      assert.equal(proxy.faults.cutUploads?.times, 0, "the fault fired");
    } finally {
      proxy.faults = {};
    }
    await assertPullsBack(`${open.host}/cut/app:v1`, img);
  });

  it("a chunk answered 503 with Retry-After is resumed after the wait, from the offset the registry reports", async () => {
    const img = await image(tree(4));
    proxy.faults = { throttle: { status: 503, retryAfter: "1", times: 1, method: "PATCH", match: /\/blobs\/uploads\// } };
    const mark = proxy.log.length;
    const started = Date.now();
    try {
      const result = await push(img, `${proxy.host}/resume/app:v1`, { chunkBytes: 64 * 1024 });
      assert.ok(Date.now() - started >= 1000, "Retry-After: 1 was honoured");
      assert.deepEqual([result.resumes, result.restarts], [1, 0]);
    } finally {
      proxy.faults = {};
    }
    assert.ok(requestsSince(mark).some((l) => /^GET \/v2\/resume\/app\/blobs\/uploads\/ID 204$/.test(l)), "the session was asked where it stood");
    await assertPullsBack(`${open.host}/resume/app:v1`, img);
  });

  it("a chunk cut mid-body, which distribution cannot resume, restarts the upload; the tag names a whole image", async () => {
    const img = await image(tree(5));
    proxy.faults = { cutUploads: { afterBytes: 30_000, times: 1, method: "PATCH" } };
    try {
      const result = await push(img, `${proxy.host}/cutchunk/app:v1`, { chunkBytes: 64 * 1024 });
      assert.ok(result.restarts + result.resumes >= 1);
    } finally {
      proxy.faults = {};
    }
    await assertPullsBack(`${open.host}/cutchunk/app:v1`, img);
  });

  it("a 429 on the manifest with Retry-After is waited out", async () => {
    const img = await image(tree(6, 1000));
    proxy.faults = { throttle: { status: 429, retryAfter: "1", times: 1, method: "PUT", match: /\/manifests\// } };
    const started = Date.now();
    try {
      await push(img, `${proxy.host}/throttled/app:v1`);
    } finally {
      proxy.faults = {};
    }
    assert.ok(Date.now() - started >= 1000);
    await assertPullsBack(`${open.host}/throttled/app:v1`, img);
  });

  it("refuses a registry that stores the manifest under another digest", async () => {
    const img = await image(tree(7, 1000));
    proxy.faults = { replace: { match: /\/manifests\/liar$/, status: 201, headers: { "docker-content-digest": `sha256:${"0".repeat(64)}` }, body: Buffer.alloc(0) } };
    try {
      await assert.rejects(push(img, `${proxy.host}/liar/app:liar`), code("EREGISTRY", /stored the manifest as sha256:0{64}/));
    } finally {
      proxy.faults = {};
    }
  });
});

describe("pushing: token auth", () => {
  it("asks for pull,push on the repository, and pull on the repository a blob is mounted from", async () => {
    const img = await image(tree(8));
    const store = new ContentStore(tempDir());
    const mark = tokens.requests.length;
    await push(img, `${tokenRegistry.host}/tok/a:v1`, { client: client({ store, credentials: USER }) });
    const second = await push(img, `${tokenRegistry.host}/tok/b:v1`, { client: client({ store, credentials: USER }) });
    assert.equal(second.mounted, 2);
    const scopes = tokens.requests.slice(mark).flatMap((r) => r.scopes);
    assert.ok(scopes.includes("repository:tok/a:pull,push"), scopes.join(" "));
    assert.ok(scopes.includes("repository:tok/b:pull,push"));
    assert.ok(scopes.includes("repository:tok/a:pull"), "the mount's token covers its source");
    await assertPullsBack(`${tokenRegistry.host}/tok/b:v1`, img, { credentials: USER });
  });

  it("an anonymous push is refused with a message that says it was a push", async () => {
    const img = await image(tree(9, 1000));
    await assert.rejects(push(img, `${tokenRegistry.host}/tok/anon:v1`), code("EAUTH", /push to tok\/anon/));
  });
});
