import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isA3sError } from "../src/errors.js";
import { formatReference, isLoopbackRegistry, manifestSelector, parseReference, registryApiHost } from "../src/oci/reference.js";

const D = `sha256:${"ab".repeat(32)}`;

describe("image references", () => {
  it("normalises Docker Hub names the way the docker CLI does", () => {
    assert.deepEqual(parseReference("alpine"), { registry: "docker.io", repository: "library/alpine", tag: "latest" });
    assert.deepEqual(parseReference("alpine:3.20"), { registry: "docker.io", repository: "library/alpine", tag: "3.20" });
    assert.deepEqual(parseReference("bitnami/redis"), { registry: "docker.io", repository: "bitnami/redis", tag: "latest" });
    assert.deepEqual(parseReference("docker.io/alpine"), { registry: "docker.io", repository: "library/alpine", tag: "latest" });
    assert.deepEqual(parseReference("index.docker.io/library/alpine:edge"), { registry: "docker.io", repository: "library/alpine", tag: "edge" });
    assert.equal(registryApiHost("docker.io"), "registry-1.docker.io");
    assert.equal(formatReference(parseReference("ubuntu")), "docker.io/library/ubuntu:latest");
  });

  it("reads registries with ports, localhost and IPv6 literals", () => {
    assert.deepEqual(parseReference("localhost:5000/app"), { registry: "localhost:5000", repository: "app", tag: "latest" });
    assert.deepEqual(parseReference("localhost/app:v1"), { registry: "localhost", repository: "app", tag: "v1" });
    assert.deepEqual(parseReference("registry.example.com:8443/team/app/sub:1.0"), {
      registry: "registry.example.com:8443",
      repository: "team/app/sub",
      tag: "1.0",
    });
    assert.deepEqual(parseReference("[::1]:5000/app:x"), { registry: "[::1]:5000", repository: "app", tag: "x" });
    // A first component without a dot, a port or "localhost" is a Docker Hub namespace.
    assert.equal(parseReference("myorg/app").registry, "docker.io");
    assert.equal(registryApiHost("localhost:5000"), "localhost:5000");
  });

  it("takes digests, and tag plus digest with the digest winning", () => {
    assert.deepEqual(parseReference(`alpine@${D}`), { registry: "docker.io", repository: "library/alpine", digest: D });
    const both = parseReference(`127.0.0.1:5000/app:v2@${D}`);
    assert.deepEqual(both, { registry: "127.0.0.1:5000", repository: "app", tag: "v2", digest: D });
    assert.equal(manifestSelector(both), D);
    assert.equal(manifestSelector(parseReference("app:v3")), "v3");
    assert.equal(formatReference(both), `127.0.0.1:5000/app:v2@${D}`);
  });

  it("refuses malformed references with a clear error", () => {
    for (const bad of [
      "",
      " alpine",
      "Alpine",
      "alpine:",
      "alpine:-x",
      "alpine@sha256:abc",
      "alpine@md5:" + "a".repeat(32),
      "a//b",
      "host:99999/app",
      "host:5000/",
      "app:tag:more",
      "re/../po",
      "x".repeat(300),
    ]) {
      assert.throws(
        () => parseReference(bad),
        (e: unknown) => isA3sError(e, "EREFERENCE") && e.message.includes("invalid image reference"),
        `should refuse ${JSON.stringify(bad)}`,
      );
    }
  });

  it("knows which registries are on loopback (the only ones allowed plain HTTP by default)", () => {
    assert.equal(isLoopbackRegistry("localhost:5000"), true);
    assert.equal(isLoopbackRegistry("127.0.0.1:5000"), true);
    assert.equal(isLoopbackRegistry("127.1.2.3"), true);
    assert.equal(isLoopbackRegistry("[::1]:5000"), true);
    assert.equal(isLoopbackRegistry("docker.io"), false);
    assert.equal(isLoopbackRegistry("192.0.2.2:5000"), false);
    assert.equal(isLoopbackRegistry("localhost.example.com"), false);
  });
});
