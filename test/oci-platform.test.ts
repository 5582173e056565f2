import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isA3sError } from "../src/errors.js";
import { parseManifest, type ImageIndex } from "../src/oci/manifest.js";
import { DOCKER_MANIFEST, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST } from "../src/oci/media-types.js";
import { chooseFromIndex, hostPlatform, offeredPlatforms, parsePlatform, platformMatches } from "../src/oci/platform.js";

const digest = (n: number): string => `sha256:${n.toString(16).padStart(64, "0")}`;

function index(entries: object[]): ImageIndex {
  const parsed = parseManifest(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: entries })), "test");
  assert.equal(parsed.kind, "index");
  return parsed as ImageIndex;
}

describe("platforms", () => {
  it("parses --platform values and normalises aliases and default variants", () => {
    assert.deepEqual(parsePlatform("linux/amd64"), { os: "linux", architecture: "amd64" });
    assert.deepEqual(parsePlatform("linux/arm64/v8"), { os: "linux", architecture: "arm64" });
    assert.deepEqual(parsePlatform("linux/arm"), { os: "linux", architecture: "arm", variant: "v7" });
    assert.deepEqual(parsePlatform("linux/arm/v6"), { os: "linux", architecture: "arm", variant: "v6" });
    assert.deepEqual(parsePlatform("x86_64"), { os: "linux", architecture: "amd64" });
    assert.deepEqual(parsePlatform("linux/aarch64"), { os: "linux", architecture: "arm64" });
    for (const bad of ["", "linux/", "a/b/c/d", "linux/amd 64"]) {
      assert.throws(() => parsePlatform(bad), (e: unknown) => isA3sError(e, "EUSAGE"), bad);
    }
    assert.equal(hostPlatform().os, "linux");
    assert.equal(platformMatches(parsePlatform("linux/arm64"), { os: "linux", architecture: "arm64", variant: "v8" }), true);
    assert.equal(platformMatches(parsePlatform("linux/arm/v6"), { os: "linux", architecture: "arm", variant: "v7" }), false);
  });

  it("picks the matching image from an index, skipping attestations", () => {
    const idx = index([
      { mediaType: OCI_MANIFEST, digest: digest(1), size: 10, platform: { os: "unknown", architecture: "unknown" } },
      {
        mediaType: OCI_MANIFEST,
        digest: digest(2),
        size: 10,
        platform: { os: "linux", architecture: "amd64" },
        annotations: { "vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": digest(3) },
      },
      { mediaType: OCI_MANIFEST, digest: digest(3), size: 10, platform: { os: "linux", architecture: "amd64" } },
      { mediaType: DOCKER_MANIFEST, digest: digest(4), size: 10, platform: { os: "linux", architecture: "arm64", variant: "v8" } },
      { mediaType: OCI_MANIFEST, digest: digest(5), size: 10, platform: { os: "linux", architecture: "arm", variant: "v7" } },
    ]);
    assert.equal(chooseFromIndex(idx, parsePlatform("linux/amd64")).manifest?.digest, digest(3));
    assert.equal(chooseFromIndex(idx, parsePlatform("linux/arm64")).manifest?.digest, digest(4));
    assert.equal(chooseFromIndex(idx, parsePlatform("linux/arm/v7")).manifest?.digest, digest(5));
    assert.equal(chooseFromIndex(idx, parsePlatform("linux/s390x")).manifest, undefined);
    assert.deepEqual(offeredPlatforms(idx), ["linux/amd64", "linux/arm64", "linux/arm/v7"]);
  });

  it("offers nested indexes to search when no direct entry fits", () => {
    const idx = index([
      { mediaType: OCI_MANIFEST, digest: digest(1), size: 10, platform: { os: "linux", architecture: "amd64" } },
      { mediaType: OCI_INDEX, digest: digest(2), size: 10 },
      { mediaType: OCI_INDEX, digest: digest(3), size: 10, platform: { os: "windows", architecture: "amd64" } },
      { mediaType: "application/vnd.example.unknown+json", digest: digest(4), size: 10, platform: { os: "linux", architecture: "arm64" } },
    ]);
    const choice = chooseFromIndex(idx, parsePlatform("linux/arm64"));
    assert.equal(choice.manifest, undefined);
    assert.deepEqual(
      choice.nested.map((d) => d.digest),
      [digest(2)],
    );
  });

  it("takes the single platform-less image of a one-image index", () => {
    const idx = index([{ mediaType: OCI_MANIFEST, digest: digest(9), size: 10 }]);
    assert.equal(chooseFromIndex(idx, parsePlatform("linux/riscv64")).manifest?.digest, digest(9));
  });
});

describe("manifests", () => {
  const manifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: OCI_CONFIG, digest: digest(1), size: 2 },
    layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: digest(2), size: 3 }],
  };
  const bytes = (o: object): Buffer => Buffer.from(JSON.stringify(o));
  const refused = (code: string, text: RegExp) => (e: unknown) => isA3sError(e, code) && text.test(e.message);

  it("parses an image manifest and accepts loose JSON content types", () => {
    const m = parseManifest(bytes(manifest), "t", "application/vnd.oci.image.manifest.v1+json; charset=utf-8");
    assert.equal(m.kind, "manifest");
    assert.equal(parseManifest(bytes(manifest), "t", "application/json").kind, "manifest");
    const { mediaType: _m, ...untyped } = manifest;
    assert.equal(parseManifest(bytes(untyped), "t").mediaType, OCI_MANIFEST);
  });

  it("refuses schema 1, however it is labelled", () => {
    const s1 = { schemaVersion: 1, name: "x", tag: "latest", fsLayers: [] };
    assert.throws(() => parseManifest(bytes(s1), "t"), refused("EMANIFEST", /schema 1/));
    assert.throws(() => parseManifest(bytes(manifest), "t", "application/vnd.docker.distribution.manifest.v1+prettyjws"), refused("EMANIFEST", /schema 1/));
  });

  it("refuses a Content-Type that contradicts the mediaType, and artifacts that are not images", () => {
    assert.throws(() => parseManifest(bytes(manifest), "t", DOCKER_MANIFEST), refused("EMANIFEST", /served as .* but its mediaType says/));
    assert.throws(() => parseManifest(bytes({ ...manifest, mediaType: OCI_INDEX }), "t"), refused("EMANIFEST", /no manifests array/));
    assert.throws(
      () => parseManifest(bytes({ ...manifest, config: { ...manifest.config, mediaType: "application/vnd.cncf.helm.config.v1+json" } }), "t"),
      refused("EMANIFEST", /not a container image config/),
    );
    assert.throws(() => parseManifest(bytes({ ...manifest, layers: [{ ...manifest.layers[0], digest: "sha256:../../etc" }] }), "t"), refused("EMANIFEST", /not a sha256/));
    assert.throws(() => parseManifest(bytes({ ...manifest, layers: [{ ...manifest.layers[0], size: -1 }] }), "t"), refused("EMANIFEST", /size/));
    assert.throws(() => parseManifest(Buffer.alloc(5 * 1024 * 1024, 0x20), "t"), refused("EMANIFEST", /larger than/));
  });
});
