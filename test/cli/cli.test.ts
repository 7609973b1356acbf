import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { connect, kw } from "../../src/session/session.js";
import { array } from "../../src/values/ndarray.js";
import { PROTOCOL_VERSION } from "../../src/wire/protocol.js";
import { formatDoctor, type DoctorReport } from "../../src/cli/doctor.js";
import { curveFromArgs, loadKeyPair, loadPublicKey } from "../../src/wire/keys.js";
import type { DeviceArray } from "../../src/values/device-array.js";
import { SidecarError } from "../../src/values/errors.js";
import { freePort } from "../support/net.js";
import { sidecarPython } from "../../src/wire/python-env.js";

const ROOT = resolve(import.meta.dirname, "..", "..");
const BIN = join(ROOT, "bin", "jaxbridge.mjs");

function jaxbridge(args: string[], timeoutMs = 120_000): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", timeout: timeoutMs, cwd: ROOT });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}


/** Start `jaxbridge serve ...` and wait until its sidecar is ready. */
async function serve(args: string[], env: Record<string, string> = {}): Promise<ChildProcess> {
  const child = spawn(process.execPath, [BIN, "serve", ...args], { stdio: ["ignore", "pipe", "pipe"], cwd: ROOT, env: { ...process.env, ...env } });
  let err = "";
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  await new Promise<void>((res, rej) => {
    child.stdout!.on("data", (d: Buffer) => d.toString().includes("JAXBRIDGE READY") && res());
    child.once("exit", (code) => rej(new Error(`serve exited with ${code}: ${err}`)));
  });
  return child;
}

function exited(child: ChildProcess): Promise<number | null> {
  return child.exitCode !== null ? Promise.resolve(child.exitCode) : new Promise((res) => child.once("exit", (code) => res(code)));
}

describe("jaxbridge command", function () {
  this.timeout(180_000);

  it("--help lists every command, and every command has --help", () => {
    const top = jaxbridge(["--help"]);
    assert.equal(top.status, 0, top.stderr);
    for (const cmd of ["repl", "serve", "doctor", "keygen", "setup"]) assert.match(top.stdout, new RegExp(`^  ${cmd}\\b`, "m"));
    const expected: Record<string, RegExp[]> = {
      repl: [/--url <url>/, /--server-key <key>/, /--client-key <file>/, /--allow <namespace>/, /--no-x64/],
      serve: [/--endpoint <url>/, /--allow <namespace>/, /--curve-secret-key <file>/, /--authorized-keys <fileOrDir>/, /--no-x64/],
      doctor: [/--json/, /--url <url>/],
      keygen: [/--out <dir>/, /--name <name>/, /--force/],
      setup: [/--force/, /--test/, /--quiet/, /--verbose/],
    };
    for (const [cmd, patterns] of Object.entries(expected)) {
      const r = jaxbridge([cmd, "--help"]);
      assert.equal(r.status, 0, `${cmd} --help: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`^Usage: jaxbridge ${cmd} `, "m"));
      for (const p of patterns) assert.match(r.stdout, p, `${cmd} --help`);
    }
  });

  it("--version prints package.json's version", () => {
    const version = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
    for (const flag of ["--version", "-V"]) {
      const r = jaxbridge([flag]);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, `${version}\n`);
    }
  });

  it("an unknown command fails with usage", () => {
    const r = jaxbridge(["frobnicate"]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /unknown command 'frobnicate'/);
  });

  it("doctor reports Node, zeromq, Python, JAX, backend, devices and protocol from a real handshake", () => {
    const r = jaxbridge(["doctor", "--json"]);
    assert.equal(r.status, 0, r.stderr + r.stdout);
    const report = JSON.parse(r.stdout) as DoctorReport;
    assert.equal(report.ok, true, report.problems.join("; "));
    assert.equal(report.node.version, process.version);
    assert.match(report.zeromq.version, /^\d+\.\d+\.\d+/);
    assert.match(report.zeromq.libzmq, /^\d+\.\d+\.\d+$/);
    assert.equal(report.jaxbridge.protocol, PROTOCOL_VERSION);
    assert.match(String(report.python?.python), /^3\.\d+\.\d+/);
    assert.match(String(report.python?.jax), /^0\.\d+/);
    const s = report.sidecar!;
    assert.equal(s.protocol, PROTOCOL_VERSION);
    assert.equal(s.embedded, true);
    assert.equal(s.backend, "cpu");
    assert.ok(s.devices.length >= 1 && s.devices[0]!.platform === "cpu");
    assert.equal(s.jax, report.python?.jax);
    // Which environment ran, and the rule that found it: the Python that reported itself.
    const expectedSource = process.env.JAXBRIDGE_PYTHON_BIN ? "JAXBRIDGE_PYTHON_BIN" : process.env.JAXBRIDGE_VENV ? "JAXBRIDGE_VENV" : "checkout .venv";
    assert.equal(report.environment?.source, expectedSource);
    assert.equal(report.environment?.python, report.python?.executable);
    assert.ok(s.roundTripUs > 0 && s.handshakeMs > 0);
    const text = formatDoctor(report);
    for (const field of ["node", "zeromq", "environment", "python", "jax", "backend", "devices", "protocol", "round trip"]) assert.match(text, new RegExp(`^  ${field}\\s`, "m"));
    assert.match(text, /\nok\n$/);
  });

  it("serve starts a sidecar with its --allow list that a client connects to; SIGTERM stops it", async () => {
    const url = `tcp://127.0.0.1:${await freePort()}`;
    const child = await serve(["--endpoint", url, "--allow", "json"]);
    try {
      const jb = await connect({ url });
      try {
        assert.equal(jb.sidecar, undefined);
        const sum = await jb.callWith<number>("jax.numpy.sum", { args: [array([1, 2, 3])], fetch: true });
        assert.equal(String(sum), "array(6)");
        assert.equal(await jb.call("json.dumps", [1, 2], kw({ separators: [",", ":"] })), "[1,2]");
        const x = await jb.call<DeviceArray>("jax.numpy.arange", 3);
        assert.deepEqual(x.shape, [3]);
      } finally {
        await jb.close();
      }
    } finally {
      child.kill("SIGTERM");
    }
    assert.equal(await exited(child), 0);
  });

  it("serve takes more namespaces from JAXBRIDGE_ALLOW and refuses names that are not module names", async () => {
    const url = `tcp://127.0.0.1:${await freePort()}`;
    const child = await serve(["--endpoint", url], { JAXBRIDGE_ALLOW: " json, equinox.nn " });
    try {
      const jb = await connect({ url });
      try {
        assert.equal(await jb.call("json.dumps", [1]), "[1]");
        assert.ok((await jb.import("equinox.nn").then((m) => m.$dir())).includes("MLP"));
        await assert.rejects(jb.call("os.getcwd"), (e: unknown) => e instanceof SidecarError && e.remoteType === "NotAllowed");
      } finally {
        await jb.close();
      }
    } finally {
      child.kill("SIGTERM");
    }
    assert.equal(await exited(child), 0);
    const r = spawnSync(process.execPath, [BIN, "serve", "--endpoint", "tcp://127.0.0.1:1"], { encoding: "utf8", cwd: ROOT, env: { ...process.env, JAXBRIDGE_ALLOW: "json,../etc" } });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /JAXBRIDGE_ALLOW: '\.\.\/etc' is not a dotted Python module name/);
  });

  it("serve passes the sidecar's refusals through: no public bind without keys", () => {
    const r = jaxbridge(["serve", "--endpoint", "tcp://0.0.0.0:1"], 60_000);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /CURVE|loopback/);
  });

  it("keygen needs no Python: its files are certificates pyzmq reads, with a matching pair and a 0600 secret", () => {
    const dir = mkdtempSync(join(tmpdir(), "jaxbridge-keygen-"));
    try {
      // No Python reachable: a bogus interpreter and an empty environment cache.
      const noPython = { ...process.env, JAXBRIDGE_PYTHON_BIN: "/nonexistent/python", JAXBRIDGE_CACHE_DIR: join(dir, "cache"), JAXBRIDGE_VENV: "" };
      const out = join(dir, "keys");
      const r = spawnSync(process.execPath, [BIN, "keygen", "--out", out, "--name", "c"], { encoding: "utf8", cwd: dir, env: noPython });
      assert.equal(r.status, 0, r.stderr);
      const publicKey = /^public key: (\S{40})$/m.exec(r.stdout)?.[1];
      assert.ok(publicKey, r.stdout);
      assert.match(r.stdout, new RegExp(`^wrote ${join(out, "c.key")} \\(public key`, "m"));
      assert.match(r.stdout, new RegExp(`^wrote ${join(out, "c.key_secret")} \\(key pair: keep it here, mode 0600\\)`, "m"));
      assert.equal(statSync(join(out, "c.key_secret")).mode & 0o777, 0o600);
      assert.equal(statSync(out).mode & 0o777, 0o700);
      // The oracle: pyzmq's own certificate reader, and libzmq's curve_public of the secret.
      const code = [
        "import json, sys, zmq, zmq.auth",
        "pub, sec = zmq.auth.load_certificate(sys.argv[1] + '.key_secret')",
        "pub2, none = zmq.auth.load_certificate(sys.argv[1] + '.key')",
        "print(json.dumps({'public': pub.decode(), 'public_file': pub2.decode(), 'no_secret': none is None, 'derived': zmq.curve_public(sec).decode()}))",
      ].join("\n");
      const py = spawnSync(sidecarPython(), ["-c", code, join(out, "c")], { encoding: "utf8" });
      assert.equal(py.status, 0, py.stderr);
      const seen = JSON.parse(py.stdout) as { public: string; public_file: string; no_secret: boolean; derived: string };
      assert.deepEqual(seen, { public: publicKey, public_file: publicKey, no_secret: true, derived: publicKey });
      // A second run refuses to replace the pair and leaves it as it was; --force replaces it.
      const again = spawnSync(process.execPath, [BIN, "keygen", "--out", out, "--name", "c"], { encoding: "utf8", cwd: dir, env: noPython });
      assert.equal(again.status, 1);
      assert.match(again.stderr, /c\.key exists already; pass force \(keygen --force\)/);
      assert.equal(loadPublicKey(join(out, "c.key_secret")), publicKey);
      const forced = spawnSync(process.execPath, [BIN, "keygen", "--out", out, "--name", "c", "--force"], { encoding: "utf8", cwd: dir, env: noPython });
      assert.equal(forced.status, 0, forced.stderr);
      assert.notEqual(loadPublicKey(join(out, "c.key_secret")), publicKey);
      assert.equal(loadPublicKey(join(out, "c.key")), loadPublicKey(join(out, "c.key_secret")));
      assert.equal(statSync(join(out, "c.key_secret")).mode & 0o777, 0o600);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("keygen writes key pairs that serve, doctor --url and the client key options use", async () => {
    const dir = mkdtempSync(join(tmpdir(), "jaxbridge-keys-"));
    try {
      for (const name of ["server", "laptop"]) {
        const r = jaxbridge(["keygen", "--out", dir, "--name", name]);
        assert.equal(r.status, 0, r.stderr);
        assert.ok(existsSync(join(dir, `${name}.key`)) && existsSync(join(dir, `${name}.key_secret`)));
      }
      const pair = loadKeyPair(join(dir, "laptop.key_secret"));
      assert.equal(loadPublicKey(join(dir, "laptop.key")), pair.publicKey);
      assert.equal(pair.secretKey.length, 40);
      // --server-key also takes the key itself, or a file holding just the key.
      const serverKey = loadPublicKey(join(dir, "server.key"));
      writeFileSync(join(dir, "server.z85"), `${serverKey}\n`);
      for (const given of [serverKey, join(dir, "server.z85"), join(dir, "server.key")]) {
        assert.deepEqual(curveFromArgs({ serverKey: given, clientKey: join(dir, "laptop.key_secret") }), { serverPublicKey: serverKey, ...pair });
      }
      assert.throws(() => curveFromArgs({ serverKey }), /needs both/);

      const url = `tcp://127.0.0.1:${await freePort()}`;
      const child = await serve(["--endpoint", url, "--curve-secret-key", join(dir, "server.key_secret"), "--authorized-keys", join(dir, "laptop.key")]);
      try {
        const r = jaxbridge(["doctor", "--json", "--url", url, "--server-key", join(dir, "server.key"), "--client-key", join(dir, "laptop.key_secret")]);
        assert.equal(r.status, 0, r.stderr + r.stdout);
        const report = JSON.parse(r.stdout) as DoctorReport;
        assert.equal(report.sidecar?.embedded, false);
        assert.equal(report.python, undefined, "a remote doctor reports what the handshake says, not the local Python");
        const half = jaxbridge(["doctor", "--url", url, "--server-key", join(dir, "server.key")]);
        assert.notEqual(half.status, 0);
        assert.match(half.stderr, /CURVE needs both --server-key .* and --client-key/);
      } finally {
        child.kill("SIGTERM");
        await exited(child);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
