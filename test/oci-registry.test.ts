import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { isA3sError } from "../src/errors.js";
import { ContentStore } from "../src/oci/store/content-store.js";
import { dockerCredentials, parseCredsFlag } from "../src/oci/registry/credentials.js";
import { parsePlatform } from "../src/oci/platform.js";
import { parseReference } from "../src/oci/reference.js";
import { RegistryClient, type RegistryClientOptions, type ResolvedManifest } from "../src/oci/registry/client.js";
import { startBlobServer, startFaultProxy, type FaultProxy } from "./helpers/fault-proxy.js";
import { RegistryPusher, selfSignedCertificate, startRegistry, type TestRegistry } from "./helpers/registry.js";
import { tempDir } from "./helpers/temp-dir.js";
import { makeImage, makeIndex, makeLayer, type TestBlob, type TestImage } from "./helpers/test-image.js";
import { startTokenServer, type TokenServer } from "./helpers/token-server.js";

const AMD64 = parsePlatform("linux/amd64");
const ARM64 = parsePlatform("linux/arm64");
const USER = { username: "alice", password: "s3cret:with:colons" };

let open: TestRegistry;
let basic: TestRegistry;
let tokenRegistry: TestRegistry;
let tokens: TokenServer;
let app: TestImage;
let arm: TestImage;
let big: TestImage;
let multi: TestBlob;
let nested: TestBlob;
let dockerList: TestBlob;
let dockerImage: TestImage;
const stops: (() => Promise<void>)[] = [];

before(async () => {
  open = await startRegistry();
  stops.push(open.stop);
  const base = makeLayer(
    [
      { path: "etc/os-release", content: "ID=a3stest\n" },
      { path: "usr/share/doc/readme", content: "docs\n" },
      { path: "bin/tool", content: Buffer.alloc(300_000, 7), mode: 0o755 },
    ],
    "gzip",
  );
  const top = makeLayer(
    [
      { path: "usr/share/.wh.doc", content: "" },
      { path: "etc/motd", content: "hello\n" },
    ],
    "zstd",
  );
  app = makeImage([base, top], { entrypoint: ["/bin/tool"] });
  arm = makeImage([makeLayer([{ path: "etc/arch", content: "arm64\n" }], "gzip")], { architecture: "arm64", variant: "v8" });
  // Six incompressible layers, big enough that downloads overlap.
  big = makeImage(
    [1, 2, 3, 4, 5, 6].map((n) => makeLayer([{ path: `data/${n}`, content: Buffer.from(Array.from({ length: 200_000 }, (_, i) => (i * 7919 + n * 104729) % 251)) }], "none")),
  );
  const attestation = makeImage([makeLayer([{ path: "sbom.json", content: "{}" }], "gzip")], { architecture: "unknown", os: "unknown" });
  multi = makeIndex([
    { manifest: app.manifest, platform: { os: "linux", architecture: "amd64" } },
    { manifest: arm.manifest, platform: { os: "linux", architecture: "arm64", variant: "v8" } },
    {
      manifest: attestation.manifest,
      platform: { os: "unknown", architecture: "unknown" },
      annotations: { "vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": arm.manifest.digest },
    },
  ]);
  const inner = makeIndex([{ manifest: arm.manifest, platform: { os: "linux", architecture: "arm64" } }]);
  nested = makeIndex([{ manifest: app.manifest, platform: { os: "linux", architecture: "amd64" } }, { manifest: inner }]);
  dockerImage = makeImage([makeLayer([{ path: "etc/docker-style", content: "yes\n" }], "gzip", true)], { docker: true });
  dockerList = makeIndex([{ manifest: dockerImage.manifest, platform: { os: "linux", architecture: "amd64" } }], true);

  const push = new RegistryPusher(open);
  for (const repo of ["app", "public/app", "private/app"]) await push.pushImage(repo, "v1", app);
  await push.pushImage("big", "v1", big);
  for (const img of [arm, attestation, app]) await push.pushImage("multi", "img", img);
  await push.pushManifest("multi", "v1", multi);
  await push.pushImage("multi", "arm", arm);
  await push.pushManifest("multi", inner.digest, inner);
  await push.pushManifest("multi", "nested", nested);
  await push.pushImage("dockerimg", "img", dockerImage);
  await push.pushManifest("dockerimg", "v1", dockerList);

  // The same storage behind Basic auth, and behind Bearer tokens from a real token server.
  basic = await startRegistry({ storage: open.storage, auth: { htpasswd: { [USER.username]: USER.password } } });
  stops.push(basic.stop);
  tokens = await startTokenServer({
    users: { [USER.username]: USER.password },
    publicRepos: (r) => r.startsWith("public/"),
    refreshTokens: { "identity-token-123": USER.username },
  });
  stops.push(tokens.stop);
  tokenRegistry = await startRegistry({ storage: open.storage, auth: { token: tokens } });
  stops.push(tokenRegistry.stop);
});

after(async () => {
  for (const stop of stops.reverse()) await stop();
});

function client(extra: RegistryClientOptions = {}): RegistryClient {
  return new RegistryClient({
    store: new ContentStore(tempDir()),
    credentialLookup: async () => undefined,
    retry: { baseDelayMs: 10, maxDelayMs: 50 },
    ...extra,
  });
}

/** Resolves and downloads every layer, as the docker:// source does. */
async function pull(c: RegistryClient, reference: string, platform = AMD64): Promise<ResolvedManifest> {
  const ref = parseReference(reference);
  const resolved = await c.resolve(ref, platform);
  // Every download settles before the verdict, so the store can be inspected afterwards.
  const results = await Promise.allSettled(resolved.manifest.layers.map((l) => c.fetchBlob(ref, l)));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
  return resolved;
}

function assertStored(store: ContentStore, image: TestImage): void {
  for (const b of [image.manifest, image.config, ...image.layers]) assert.deepEqual(readFileSync(store.path(b.digest)), b.bytes, b.digest);
}

const code = (c: string, text?: RegExp) => (e: unknown) => {
  assert.ok(isA3sError(e, c), `expected ${c}, got ${String((e as Error)?.stack ?? e)}`);
  if (text) assert.match(e.message + " " + (e.hint ?? ""), text);
  return true;
};

function storeIsClean(store: ContentStore, absent: TestBlob): void {
  const list = (d: string): string[] => (existsSync(d) ? readdirSync(d) : []);
  assert.deepEqual(list(join(store.root, "tmp")), [], "no temporaries left");
  assert.equal(list(join(store.root, "sha256")).includes(absent.digest.slice(7)), false, "the bad blob was not stored");
}

describe("registry client: pulling", () => {
  it("pulls a tagged image over plain HTTP from a loopback registry and stores every verified blob", async () => {
    const c = client();
    const r = await pull(c, `${open.host}/app:v1`);
    assert.equal(r.manifestDigest, app.manifest.digest);
    assert.equal(r.indexDigest, undefined);
    assert.deepEqual(r.configBytes, app.config.bytes);
    assert.deepEqual(
      r.manifest.layers.map((l) => l.mediaType),
      app.layers.map((l) => l.mediaType),
    );
    assertStored(c.store, app);
    assert.deepEqual({ heads: c.stats.manifestHeads, gets: c.stats.manifestGets, blobs: c.stats.blobGets }, { heads: 1, gets: 1, blobs: 3 });
  });

  it("a second pull of the same tag makes one manifest request and downloads nothing; by digest, none at all", async () => {
    const store = new ContentStore(tempDir());
    await pull(client({ store }), `${open.host}/app:v1`);
    const again = client({ store });
    await pull(again, `${open.host}/app:v1`);
    assert.deepEqual(
      { requests: again.stats.requests, heads: again.stats.manifestHeads, gets: again.stats.manifestGets, blobs: again.stats.blobGets, bytes: again.stats.blobBytes },
      { requests: 1, heads: 1, gets: 0, blobs: 0, bytes: 0 },
    );
    const byDigest = client({ store });
    await pull(byDigest, `${open.host}/app@${app.manifest.digest}`);
    assert.equal(byDigest.stats.requests, 0);
  });

  it("picks the platform from a multi-architecture index, skipping the attestation entry", async () => {
    const c = client();
    const r = await pull(c, `${open.host}/multi:v1`, ARM64);
    assert.equal(r.indexDigest, multi.digest);
    assert.equal(r.manifestDigest, arm.manifest.digest);
    assert.deepEqual(r.manifestDigests, [multi.digest, arm.manifest.digest]);
    assertStored(c.store, arm);
    assert.equal((await pull(c, `${open.host}/multi:v1`, AMD64)).manifestDigest, app.manifest.digest);
    await assert.rejects(pull(c, `${open.host}/multi:v1`, parsePlatform("linux/s390x")), code("EPLATFORM", /offers linux\/amd64, linux\/arm64/));
  });

  it("walks nested indexes, and reads Docker manifest lists with Docker media types", async () => {
    const c = client();
    const r = await pull(c, `${open.host}/multi:nested`, ARM64);
    assert.equal(r.manifestDigest, arm.manifest.digest);
    assert.equal(r.manifestDigests.length, 3);
    const d = await pull(c, `${open.host}/dockerimg:v1`);
    assert.equal(d.manifest.mediaType, "application/vnd.docker.distribution.manifest.v2+json");
    assert.equal(d.manifest.layers[0]!.mediaType, "application/vnd.docker.image.rootfs.diff.tar.gzip");
    assertStored(c.store, dockerImage);
  });

  it("says clearly when a repository or tag does not exist", async () => {
    await assert.rejects(pull(client(), `${open.host}/app:nope`), code("ENOTFOUND", /manifest .*app:nope not found/));
    await assert.rejects(pull(client(), `${open.host}/nothing/here:v1`), code("ENOTFOUND"));
  });

  it("downloads at most three layers at once", async () => {
    const proxy = await startFaultProxy(open.url, { delayBlobsMs: 100 });
    try {
      const c = client();
      await pull(c, `${proxy.host}/big:v1`);
      assertStored(c.store, big);
      // Bounded by three, and really concurrent (each blob is held 100 ms, so they overlap).
      assert.ok(proxy.maxConcurrentBlobs <= 3 && proxy.maxConcurrentBlobs >= 2, `at most ${proxy.maxConcurrentBlobs} at once`);
    } finally {
      await proxy.stop();
    }
  });
});

describe("registry client: authentication", () => {
  it("Basic: refuses an anonymous pull with a hint, refuses wrong credentials, pulls with --creds", async () => {
    await assert.rejects(pull(client(), `${basic.host}/app:v1`), code("EAUTH", /anonymous pull.*--creds USER:PASSWORD/));
    await assert.rejects(pull(client({ credentials: { username: "alice", password: "wrong" } }), `${basic.host}/app:v1`), code("EAUTH", /refused our credentials/));
    const c = client({ credentials: USER });
    assertStored((await pull(c, `${basic.host}/app:v1`), c.store), app);
  });

  it("Basic: finds credentials in ~/.docker/config.json auths", async () => {
    const dir = tempDir();
    writeFileSync(
      join(dir, "config.json"),
      JSON.stringify({ auths: { [`http://${basic.host}`]: { auth: Buffer.from(`${USER.username}:${USER.password}`).toString("base64") } } }),
    );
    const c = client({ credentialLookup: (r) => dockerCredentials(r, { configPath: join(dir, "config.json") }) });
    await pull(c, `${basic.host}/app:v1`);
    assertStored(c.store, app);
  });

  it("reads Docker Hub's config.json key, identity tokens, and --creds with colons in the password", async () => {
    const dir = tempDir();
    const config = join(dir, "config.json");
    writeFileSync(
      config,
      JSON.stringify({
        auths: {
          "https://index.docker.io/v1/": { auth: Buffer.from("hubuser:hub:pass").toString("base64") },
          "registry.example.com": { identitytoken: "refresh-me" },
        },
      }),
    );
    assert.deepEqual(await dockerCredentials("docker.io", { configPath: config }), { username: "hubuser", password: "hub:pass" });
    assert.deepEqual(await dockerCredentials("registry.example.com", { configPath: config }), { identityToken: "refresh-me" });
    assert.equal(await dockerCredentials("other.example.com", { configPath: config }), undefined);
    assert.equal(await dockerCredentials("docker.io", { configPath: join(dir, "missing.json") }), undefined);
    assert.deepEqual(parseCredsFlag("u:p:q"), { username: "u", password: "p:q" });
    assert.throws(() => parseCredsFlag("nopassword"), code("EUSAGE", /USER:PASSWORD/));
  });

  it("Basic: asks a docker-credential helper named in credHelpers, and goes anonymous when credsStore knows nothing", async () => {
    const dir = tempDir();
    const bin = join(dir, "bin");
    mkdirSync(bin);
    const asked = join(dir, "asked");
    writeFileSync(
      join(bin, "docker-credential-a3stest"),
      `#!/bin/sh\n[ "$1" = get ] || exit 3\nread server\necho "$server" >> ${asked}\n` +
        `printf '{"ServerURL":"%s","Username":"${USER.username}","Secret":"${USER.password}"}' "$server"\n`,
    );
    writeFileSync(join(bin, "docker-credential-empty"), `#!/bin/sh\necho "credentials not found in native keychain"\nexit 1\n`);
    chmodSync(join(bin, "docker-credential-a3stest"), 0o755);
    chmodSync(join(bin, "docker-credential-empty"), 0o755);
    const config = join(dir, "config.json");
    const oldPath = process.env.PATH;
    process.env.PATH = `${bin}:${oldPath}`;
    try {
      writeFileSync(config, JSON.stringify({ credsStore: "empty", credHelpers: { [basic.host]: "a3stest" } }));
      const c = client({ credentialLookup: (r) => dockerCredentials(r, { configPath: config }) });
      await pull(c, `${basic.host}/app:v1`);
      assertStored(c.store, app);
      assert.equal(readFileSync(asked, "utf8"), `${basic.host}\n`);

      writeFileSync(config, JSON.stringify({ credsStore: "empty" }));
      await assert.rejects(
        pull(client({ credentialLookup: (r) => dockerCredentials(r, { configPath: config }) }), `${basic.host}/app:v1`),
        code("EAUTH", /anonymous/),
      );
      const warnings: string[] = [];
      writeFileSync(config, JSON.stringify({ credsStore: "not-installed" }));
      assert.equal(await dockerCredentials(basic.host, { configPath: config, warn: (m) => warnings.push(m) }), undefined);
      assert.match(warnings.join(), /docker-credential-not-installed is not installed/);
    } finally {
      process.env.PATH = oldPath;
    }
  });

  it("Bearer: the anonymous token flow pulls a public repository; a private one needs credentials", async () => {
    tokens.requests.length = 0;
    const c = client();
    await pull(c, `${tokenRegistry.host}/public/app:v1`);
    assertStored(c.store, app);
    assert.deepEqual(
      tokens.requests.map((r) => [r.user, r.scopes.join(" "), r.status]),
      [[undefined, "repository:public/app:pull", 200]],
    );
    await assert.rejects(pull(client(), `${tokenRegistry.host}/private/app:v1`), code("EAUTH", /anonymous pull/));
    tokens.requests.length = 0;
    const authed = client({ credentials: USER });
    await pull(authed, `${tokenRegistry.host}/private/app:v1`);
    assertStored(authed.store, app);
    assert.deepEqual(
      tokens.requests.map((r) => [r.user, r.scopes.join(" ")]),
      [["alice", "repository:private/app:pull"]],
    );
    assert.equal(authed.tokenFetches, 1, "one token serves every request of the pull");
  });

  it("Bearer: an identity token from a credential helper is exchanged with a refresh_token POST", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "docker-credential-idtok"), `#!/bin/sh\nread server\nprintf '{"ServerURL":"%s","Username":"<token>","Secret":"identity-token-123"}' "$server"\n`);
    chmodSync(join(dir, "docker-credential-idtok"), 0o755);
    writeFileSync(join(dir, "config.json"), JSON.stringify({ credsStore: "idtok" }));
    const oldPath = process.env.PATH;
    process.env.PATH = `${dir}:${oldPath}`;
    try {
      tokens.requests.length = 0;
      const c = client({ credentialLookup: (r) => dockerCredentials(r, { configPath: join(dir, "config.json") }) });
      await pull(c, `${tokenRegistry.host}/private/app:v1`);
      assertStored(c.store, app);
      assert.deepEqual(
        tokens.requests.map((r) => [r.method, r.user]),
        [["POST", "alice"]],
      );
    } finally {
      process.env.PATH = oldPath;
    }
  });

  it("Bearer: fetches a new token when one expires in the middle of a pull", async () => {
    const proxy = await startFaultProxy(tokenRegistry.url, { expireTokensAfter: 2 });
    try {
      const c = client({ credentials: USER });
      await pull(c, `${proxy.host}/private/app:v1`);
      assertStored(c.store, app);
      assert.ok(c.tokenFetches >= 2, `tokens fetched: ${c.tokenFetches}`);
      const refused = proxy.log.findIndex((e) => e.status === 401 && e.authorization?.startsWith("Bearer "));
      assert.ok(refused > 0, "a request with an expired token was refused");
      assert.equal(proxy.log[refused + 1]?.status, 200, "and retried with the new token");
      assert.notEqual(proxy.log[refused + 1]?.authorization, proxy.log[refused]?.authorization);

      // Concurrent downloads refused with the same expired token share one new token, and none fails.
      proxy.faults = { expireTokensAfter: 3, delayBlobsMs: 50 };
      const d = client({ credentials: USER });
      await pull(d, `${proxy.host}/big:v1`);
      assertStored(d.store, big);
      assert.ok(d.tokenFetches >= 2, `tokens fetched: ${d.tokenFetches}`);
    } finally {
      await proxy.stop();
    }
  });

  it("follows a blob redirect to another host without sending it the registry's Authorization", async () => {
    const cdn = await startBlobServer(new Map([...app.layers, app.config].map((b) => [b.digest, b.bytes])));
    const proxy = await startFaultProxy(basic.url, { redirectBlobsTo: cdn.origin });
    try {
      const c = client({ credentials: USER });
      await pull(c, `${proxy.host}/app:v1`);
      assertStored(c.store, app);
      assert.equal(cdn.requests.length, 3);
      assert.deepEqual(
        cdn.requests.filter((r) => r.authorization !== undefined),
        [],
      );
      assert.ok(proxy.log.filter((e) => e.path.includes("/blobs/")).every((e) => e.authorization?.startsWith("Basic ")));
    } finally {
      await proxy.stop();
      await cdn.stop();
    }
  });
});

describe("registry client: faults", () => {
  let proxy: FaultProxy;
  before(async () => {
    proxy = await startFaultProxy(open.url);
  });
  after(async () => proxy.stop());

  it("resumes a blob cut at 60 % with a Range request", async () => {
    proxy.faults = { cutBlobs: { fraction: 0.6, times: 1 } };
    proxy.log.length = 0;
    const c = client();
    await pull(c, `${proxy.host}/app:v1`);
    assertStored(c.store, app);
    const resumed = proxy.log.filter((e) => e.range !== undefined);
    assert.equal(resumed.length, 1);
    assert.equal(resumed[0]!.status, 206);
    assert.equal(c.stats.resumes, 1);
    // Every byte came over the wire once.
    assert.equal(c.stats.blobBytes, app.config.size + app.layers[0]!.size + app.layers[1]!.size);
  });

  it("resumes even when the server ignores Range, skipping what it already has", async () => {
    proxy.faults = { cutBlobs: { fraction: 0.6, times: 1 }, ignoreRange: true };
    const c = client();
    await pull(c, `${proxy.host}/app:v1`);
    assertStored(c.store, app);
    assert.equal(c.stats.resumes, 1);
  });

  it("waits for Retry-After on 429 and 503 and then succeeds", async () => {
    proxy.faults = { throttle: { status: 429, retryAfter: "1", times: 2, match: /manifests/ } };
    proxy.log.length = 0;
    const c = client();
    await pull(c, `${proxy.host}/app:v1`);
    assertStored(c.store, app);
    assert.deepEqual(
      proxy.log.slice(0, 3).map((e) => e.status),
      [429, 429, 200],
    );
    proxy.faults = { throttle: { status: 503, times: 2, match: /blobs/ } };
    const d = client();
    await pull(d, `${proxy.host}/app:v1`);
    assert.equal(d.stats.retries, 2);
  });

  it("gives up with a clear error when the registry keeps failing or asks to wait too long", async () => {
    proxy.faults = { throttle: { status: 503, times: 100 } };
    proxy.log.length = 0;
    await assert.rejects(pull(client(), `${proxy.host}/app:v1`), code("EREGISTRY", /answered 503 .* 5 times/));
    assert.equal(proxy.log.length, 5);
    proxy.faults = { throttle: { status: 429, retryAfter: "3600", times: 100 } };
    await assert.rejects(pull(client(), `${proxy.host}/app:v1`), code("EREGISTRY", /retry after 3600 s.*rate limit/));
  });

  it("refuses a corrupted layer, config, manifest or index entry, and stores nothing of it", async () => {
    const layer = app.layers[0]!;
    proxy.faults = { corrupt: { match: new RegExp(layer.digest), times: 1 } };
    const c = client();
    await assert.rejects(pull(c, `${proxy.host}/app:v1`), code("EDIGEST", new RegExp(`expected ${layer.digest}`)));
    storeIsClean(c.store, layer);

    proxy.faults = { corrupt: { match: new RegExp(app.config.digest), times: 1 } };
    const d = client();
    await assert.rejects(pull(d, `${proxy.host}/app:v1`), code("EDIGEST"));
    storeIsClean(d.store, app.config);

    proxy.faults = { corrupt: { match: /manifests\/v1/, times: 1 } };
    const e = client();
    await assert.rejects(pull(e, `${proxy.host}/app:v1`), code("EDIGEST", /manifest .*app:v1/));
    storeIsClean(e.store, app.manifest);

    proxy.faults = { corrupt: { match: new RegExp(`manifests/${arm.manifest.digest}`), times: 1 } };
    const f = client();
    await assert.rejects(pull(f, `${proxy.host}/multi:v1`, ARM64), code("EDIGEST", new RegExp(arm.manifest.digest)));
    storeIsClean(f.store, arm.manifest);
  });

  it("refuses a manifest whose Content-Type contradicts its mediaType, and schema 1", async () => {
    proxy.faults = { contentType: { match: /manifests/, value: "application/vnd.docker.distribution.manifest.v2+json" } };
    await assert.rejects(pull(client(), `${proxy.host}/app:v1`), code("EMANIFEST", /served as .*docker.* but its mediaType says .*oci/));
    const schema1 = Buffer.from(JSON.stringify({ schemaVersion: 1, name: "app", tag: "old", architecture: "amd64", fsLayers: [], history: [] }));
    proxy.faults = {
      replace: { match: /manifests\/old/, status: 200, headers: { "content-type": "application/vnd.docker.distribution.manifest.v1+prettyjws" }, body: schema1 },
    };
    await assert.rejects(pull(client(), `${proxy.host}/app:old`), code("EMANIFEST", /schema 1.*re-push/));
  });

  it("refuses an OCI artifact (a Helm chart) that is not a container image", async () => {
    const artifact = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: { mediaType: "application/vnd.cncf.helm.config.v1+json", digest: app.config.digest, size: app.config.size },
        layers: [],
      }),
    );
    proxy.faults = { replace: { match: /manifests\/chart/, status: 200, headers: { "content-type": "application/vnd.oci.image.manifest.v1+json" }, body: artifact } };
    await assert.rejects(pull(client(), `${proxy.host}/app:chart`), code("EMANIFEST", /not a container image config/));
  });
});

describe("registry client: transport security", () => {
  it("speaks plain HTTP to a non-loopback registry only with --insecure", async (t) => {
    const address = Object.values(networkInterfaces())
      .flat()
      .find((a) => a && a.family === "IPv4" && !a.internal)?.address;
    if (!address) return t.skip("this machine has no non-loopback IPv4 address");
    const proxy = await startFaultProxy(open.url, {}, address);
    try {
      await assert.rejects(pull(client(), `${proxy.host}/app:v1`), code("EREGISTRY", /--insecure/));
      assert.equal(proxy.log.length, 0, "not one plain-HTTP request was sent");
      const c = client({ insecure: true });
      const r = await pull(c, `${proxy.host}/app:v1`);
      assert.equal(r.manifestDigest, app.manifest.digest);
    } finally {
      await proxy.stop();
    }
  });

  it("refuses an untrusted TLS certificate (no fallback to HTTP) unless --insecure", async () => {
    const reg = await startRegistry({ storage: open.storage, tls: selfSignedCertificate(tempDir()) });
    try {
      await assert.rejects(pull(client(), `${reg.host}/app:v1`), code("EREGISTRY", /TLS certificate is not trusted.*NODE_EXTRA_CA_CERTS/));
      const c = client({ insecure: true });
      const r = await pull(c, `${reg.host}/app:v1`);
      assert.equal(r.manifestDigest, app.manifest.digest);
      assertStored(c.store, app);
    } finally {
      await reg.stop();
    }
  });

  it("never follows a redirect from a registry to plain HTTP on another host", async () => {
    const proxy = await startFaultProxy(open.url, { redirectBlobsTo: "http://192.0.2.2:9" });
    try {
      await assert.rejects(pull(client(), `${proxy.host}/app:v1`), code("EINSECURE", /refusing plain HTTP to 192.0.2.2:9/));
    } finally {
      await proxy.stop();
    }
  });
});
