/**
 * The remote path without Docker: a sidecar process on loopback TCP with
 * CURVE passes the conformance suite; clients with a wrong or missing key are
 * refused at the handshake, promptly, and run nothing; a bind others could
 * reach is refused without keys; key files written by either side are read by
 * the other.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { Dealer } from "zeromq";
import { encode } from "../../src/wire/protocol.js";
import { AuthError, BridgeInputError, SidecarDiedError } from "../../src/values/errors.js";
import { type NDArray, array } from "../../src/values/ndarray.js";
import { CURVE_ENV, curveFromEnv, generateKeyPair, isZ85Key, loadCurveKeys, loadKeyPair, loadPublicKey, parseCertificate, writeKeyPair } from "../../src/wire/keys.js";
import { PACKAGE_ROOT, sidecarPython } from "../../src/wire/python-env.js";
import { connect, type Session } from "../../src/session/session.js";
import { conformance } from "../conformance/index.js";
import { type KeySet, type SidecarProcess, makeKeys, serveExpectingRefusal, startSidecar } from "../conformance/support.js";

const execFileP = promisify(execFile);

let keys: KeySet | undefined;
let sidecar: SidecarProcess | undefined;

describe("remote sidecar on loopback TCP with CURVE", function () {
  this.timeout(180_000);

  before(async function () {
    this.timeout(300_000);
    keys = await makeKeys();
    sidecar = await startSidecar(["--endpoint", "tcp://127.0.0.1:*", "--curve-secret-key", keys.serverSecret, "--authorized-keys", keys.authorized]);
    assert.match(sidecar.url, /^tcp:\/\/127\.0\.0\.1:\d+$/);
  });
  after(async () => {
    await sidecar?.stop();
    keys?.cleanup();
  });

  conformance("loopback TCP + CURVE", () => connect({ url: sidecar!.url, curve: keys!.client }), { curve: () => keys?.client, backend: "cpu" });

  describe("who is let in", () => {
    let good: Session | undefined;
    before(async () => {
      good = await connect({ url: sidecar!.url, curve: keys!.client });
    });
    after(async () => {
      await good?.close();
    });

    async function refused(opts: Parameters<typeof connect>[0], pattern: RegExp): Promise<void> {
      const before = (await good!.stats()).requests;
      const t0 = Date.now();
      await assert.rejects(connect({ ...opts, handshakeTimeoutMs: 20_000 }), (e: unknown) => e instanceof AuthError && pattern.test((e as Error).message));
      const ms = Date.now() - t0;
      assert.ok(ms < 5000, `refused after ${ms} ms: the client should learn at the handshake, not at its deadline`);
      assert.equal((await good!.stats()).requests, before + 1, "only our own stats call reached the sidecar");
    }

    it("refuses a client whose key is not authorized, at the handshake, saying so", async () => {
      await refused({ url: sidecar!.url, curve: { ...keys!.stranger, serverPublicKey: keys!.client.serverPublicKey } }, /refused the connection \(handshake:error:auth\): this client's public key is not among the sidecar's --authorized-keys/);
    });

    it("refuses a client with no key", async () => {
      // Depending on who notices first, libzmq reports a protocol error or a dropped connection.
      await refused({ url: sidecar!.url }, /(refused the connection \(handshake:error:protocol\)|closed the connection during the handshake): it (probably )?requires CURVE: pass `curve` keys/);
    });

    it("refuses a client that has the wrong server key", async () => {
      const other = generateKeyPair();
      await refused({ url: sidecar!.url, curve: { ...keys!.client, serverPublicKey: other.publicKey } }, /closed the connection during the handshake: the server public key given in `curve` is not this sidecar's key/);
    });

    it("a refused peer's messages never reach the sidecar", async () => {
      const before = (await good!.stats()).requests;
      const raw = new Dealer({ linger: 0, sendTimeout: 0, curveServerKey: keys!.client.serverPublicKey, curvePublicKey: keys!.stranger.publicKey, curveSecretKey: keys!.stranger.secretKey });
      raw.connect(sidecar!.url);
      try {
        const msg = encode({ id: 1, op: "call", fn: "jax.numpy.add", args: [array([1], "int32"), 1], kwargs: {}, fetch: true });
        await raw.send(msg).catch(() => {}); // queued (or refused at once): either way it must not arrive
        await new Promise((r) => setTimeout(r, 1500));
      } finally {
        raw.close();
      }
      assert.equal((await good!.stats()).requests, before + 1);
      await good!.ping();
    });
  });

  describe("binding", () => {
    for (const endpoint of ["tcp://0.0.0.0:5599", "tcp://*:5599"]) {
      it(`refuses ${endpoint} without CURVE keys, at once and saying why`, async () => {
        const r = await serveExpectingRefusal(["--endpoint", endpoint]);
        assert.equal(r.code, 2, r.stderr);
        assert.match(r.stderr, /refusing to bind .* without CURVE/);
        assert.match(r.stderr, /keygen/);
        assert.ok(!r.stdout.includes("READY"));
        assert.ok(r.ms < 30_000);
      });
    }

    it("binds 0.0.0.0 with CURVE keys", async () => {
      const s = await startSidecar(["--endpoint", "tcp://0.0.0.0:*", "--curve-secret-key", keys!.serverSecret, "--authorized-keys", keys!.authorized]);
      try {
        const port = /:(\d+)$/.exec(s.url)![1];
        const jb = await connect({ url: `tcp://127.0.0.1:${port}`, curve: keys!.client });
        const r = await jb.callWith<NDArray>("jax.numpy.add", { args: [array([1, 2], "int32"), 40], fetch: true });
        assert.deepEqual(r.toList(), [41, 42]);
        await jb.close();
      } finally {
        await s.stop();
      }
    });
  });
});

describe("key files (src/wire/keys.ts)", () => {
  it("reads the sidecar keygen's certificates, and the sidecar reads ours", async () => {
    const k = await makeKeys();
    try {
      const server = parseCertificate(readFileSync(k.serverSecret, "utf8"));
      assert.ok(isZ85Key(server.publicKey) && isZ85Key(server.secretKey!));
      assert.equal(loadPublicKey(k.serverPublic), server.publicKey);
      assert.equal(k.client.serverPublicKey, server.publicKey);
      // Ours, read by pyzmq's own certificate reader.
      const w = writeKeyPair(join(k.dir, "ts"), "mine");
      assert.equal(statSync(w.secretFile).mode & 0o777, 0o600);
      const py = await execFileP(sidecarPython(), ["-c", `import sys, zmq, zmq.auth; p, s = zmq.auth.load_certificate(sys.argv[1]); assert zmq.curve_public(s) == p; print(p.decode())`, w.secretFile], { cwd: PACKAGE_ROOT });
      assert.equal(py.stdout.trim(), w.publicKey);
      assert.deepEqual(loadKeyPair(w.secretFile), { publicKey: w.publicKey, secretKey: loadKeyPair(w.secretFile).secretKey });
      assert.throws(() => writeKeyPair(join(k.dir, "ts"), "mine"), /exists already/);
      assert.throws(() => loadKeyPair(w.publicFile), (e: unknown) => e instanceof BridgeInputError && /only a public key/.test((e as Error).message));
      // A server key may be given as the key itself.
      assert.equal(loadCurveKeys({ server: server.publicKey, client: w.secretFile }).serverPublicKey, server.publicKey);
    } finally {
      k.cleanup();
    }
  });

  it("takes keys from JAXBRIDGE_CURVE_SERVER_KEY and JAXBRIDGE_CURVE_CLIENT_KEY", async () => {
    const k = await makeKeys();
    try {
      const client = writeKeyPair(join(k.dir, "env"), "c");
      assert.equal(curveFromEnv({}), undefined);
      const got = curveFromEnv({ [CURVE_ENV.server]: k.serverPublic, [CURVE_ENV.client]: client.secretFile });
      assert.deepEqual(got, { serverPublicKey: loadPublicKey(k.serverPublic), ...loadKeyPair(client.secretFile) });
      assert.throws(() => curveFromEnv({ [CURVE_ENV.server]: k.serverPublic }), /JAXBRIDGE_CURVE_CLIENT_KEY/);
      const junk = join(k.dir, "junk");
      writeFileSync(junk, "hello");
      assert.throws(() => curveFromEnv({ [CURVE_ENV.server]: junk, [CURVE_ENV.client]: client.secretFile }), /not a ZeroMQ certificate/);
    } finally {
      k.cleanup();
    }
  });
});
