/**
 * The Docker suite: build the sidecar image, start it with testcontainers and
 * run the conformance suite against it over TCP + CURVE; then bring the
 * Compose dev stack up and check that the app service printed the
 * quickstart's results. Runs wherever a Docker engine answers; where none
 * does, it is skipped with one loud line saying why.
 *
 * Base images: local/python3.13 and local/node20 when they exist (built by
 * `scripts/docker-prepare.sh bases` where no registry is reachable), else the
 * official python:3.13-slim and node:20-slim; JAXBRIDGE_DOCKER_PYTHON_BASE and
 * JAXBRIDGE_DOCKER_NODE_BASE override. The wheelhouse and npm cache the builds
 * use offline are prepared first (scripts/docker-prepare.sh, quick when current).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { GenericContainer, type StartedTestContainer, Wait, getContainerRuntimeClient } from "testcontainers";
import { AuthError } from "../src/values/errors.js";
import { PROTOCOL_VERSION } from "../src/wire/protocol.js";
import { PACKAGE_ROOT } from "../src/wire/python-env.js";
import { connect } from "../src/session/session.js";
import { conformance } from "./conformance/index.js";
import { type KeySet, makeKeys } from "./conformance/support.js";
import { freePort } from "./support/net.js";

// The Ryuk reaper image cannot be pulled where no registry is reachable; the
// suite removes what it starts itself.
process.env.TESTCONTAINERS_RYUK_DISABLED ??= "true";

const SIDECAR_TAG = "jaxbridge-sidecar:test";

interface Run {
  code: number | null;
  out: string;
  ms: number;
}

/** Run a command to completion, keeping the tail of its output (nothing is thrown). */
function sh(cmd: string, args: string[], opts: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<Run> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: PACKAGE_ROOT, env: { ...process.env, ...opts.env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    const keep = (d: Buffer): void => void (out = (out + d.toString()).slice(-20_000));
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 600_000);
    child.on("error", (e) => {
      clearTimeout(timer);
      resolve({ code: null, out: `${out}\n${e.message}`, ms: Date.now() - t0 });
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, out, ms: Date.now() - t0 });
    });
  });
}

function must(r: Run, what: string): string {
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}, ${r.ms} ms):\n${r.out.split("\n").slice(-40).join("\n")}`);
  return r.out;
}

/** Why Docker cannot be used here, or null when an engine answers and the CLI works. */
async function dockerUnavailable(): Promise<string | null> {
  try {
    await getContainerRuntimeClient();
  } catch (e) {
    return `no Docker engine answers (${(e as Error).message.split("\n")[0]})`;
  }
  const v = await sh("docker", ["version", "--format", "{{.Server.Version}}"], { timeoutMs: 30_000 });
  if (v.code !== 0) return `an engine answers but the docker CLI does not work (${v.out.trim().split("\n").pop()})`;
  return null;
}

async function imageExists(name: string): Promise<boolean> {
  return (await sh("docker", ["image", "inspect", name], { timeoutMs: 30_000 })).code === 0;
}

async function base(env: string, local: string, official: string): Promise<string> {
  return process.env[env] || ((await imageExists(local)) ? local : official);
}


/**
 * A Compose project of its own for one test: `run(...args)` runs Compose
 * (`docker compose`, else v1's `docker-compose`) on docker-compose.yml with
 * `extra` first. Skips the test where neither is installed.
 */
async function composeProject(test: Mocha.Context, name: string, extra: string[], env: Record<string, string>): Promise<(...args: string[]) => Promise<Run>> {
  const compose = (await sh("docker", ["compose", "version"], { timeoutMs: 30_000 })).code === 0 ? ["docker", "compose"] : (await sh("docker-compose", ["version"], { timeoutMs: 30_000 })).code === 0 ? ["docker-compose"] : null;
  if (!compose) {
    console.log("!!!!!!!!!! docker compose test SKIPPED: neither `docker compose` nor `docker-compose` is installed (Debian: apt-get install docker-compose) !!!!!!!!!!");
    test.skip();
  }
  const project = `${name}-${process.pid}`;
  return (...args) => sh(compose![0]!, [...compose!.slice(1), "-p", project, "-f", "docker-compose.yml", ...extra, ...args], { env: { ...env, COMPOSE_PROJECT_NAME: project } });
}

describe("docker: the sidecar image and the Compose dev stack", function () {
  this.timeout(900_000);
  let pythonBase = "";
  let nodeBase = "";

  before(async function () {
    this.timeout(900_000);
    const why = await dockerUnavailable();
    if (why) {
      console.log(`!!!!!!!!!! docker suite SKIPPED: ${why}; start an engine (see docker/README.md) to run it !!!!!!!!!!`);
      this.skip();
    }
    pythonBase = await base("JAXBRIDGE_DOCKER_PYTHON_BASE", "local/python3.13", "python:3.13-slim");
    nodeBase = await base("JAXBRIDGE_DOCKER_NODE_BASE", "local/node20", "node:20-slim");
    must(await sh("bash", ["scripts/docker-prepare.sh", "wheels", "npm"]), "scripts/docker-prepare.sh wheels npm");
    // The CLI rather than testcontainers' builder: same legacy builder, but a failed build shows its log.
    must(await sh("docker", ["build", "-q", "--build-arg", `BASE=${pythonBase}`, "-t", SIDECAR_TAG, "."]), `docker build of the sidecar image from ${pythonBase} (where no registry is reachable, run scripts/docker-prepare.sh bases first)`);
  });

  describe("the sidecar container over TCP + CURVE", () => {
    let keys: KeySet | undefined;
    let container: StartedTestContainer | undefined;
    let url = "";

    before(async function () {
      this.timeout(300_000);
      keys = await makeKeys();
      container = await new GenericContainer(SIDECAR_TAG)
        .withExposedPorts(5555)
        .withCopyContentToContainer([
          { content: readFileSync(keys.serverSecret), target: "/keys/server.key_secret", mode: 0o644 },
          { content: readFileSync(join(keys.authorized, "laptop.key")), target: "/keys/clients/laptop.key", mode: 0o644 },
        ])
        // The image's own check (the protocol handshake over CURVE), polled faster than its 30 s.
        .withHealthCheck({ test: ["CMD", "python", "/usr/local/lib/jaxbridge/healthcheck.py"], interval: 1000, timeout: 10_000, retries: 120, startPeriod: 1000 })
        .withWaitStrategy(Wait.forHealthCheck())
        .withStartupTimeout(240_000)
        .start();
      url = `tcp://127.0.0.1:${container.getMappedPort(5555)}`;
    });
    after(async () => {
      await container?.stop({ timeout: 5000 });
      keys?.cleanup();
    });

    it("runs as a non-root user and passes its handshake health check", async () => {
      const id = await container!.exec(["id", "-u"]);
      assert.equal(id.output.trim(), "10001");
      const health = await container!.exec(["python", "/usr/local/lib/jaxbridge/healthcheck.py"]);
      assert.equal(health.exitCode, 0, health.output);
      // The health check speaks the protocol this checkout speaks (rel made it 2).
      assert.match(health.output, new RegExp(`^healthy: protocol ${PROTOCOL_VERSION}, jax \\S+ on cpu`, "m"));
    });

    it("refuses a client without an authorized key, at the handshake", async () => {
      const t0 = Date.now();
      await assert.rejects(connect({ url, curve: { ...keys!.stranger, serverPublicKey: keys!.client.serverPublicKey }, handshakeTimeoutMs: 20_000 }), (e: unknown) => e instanceof AuthError && /handshake:error:auth/.test((e as Error).message));
      await assert.rejects(connect({ url, handshakeTimeoutMs: 20_000 }), (e: unknown) => e instanceof AuthError);
      assert.ok(Date.now() - t0 < 10_000);
    });

    conformance("the sidecar container", () => connect({ url, curve: keys!.client }), { curve: () => keys?.client, backend: "cpu" });
  });

  describe("the Compose dev stack", () => {
    it("`compose up` runs the app's quickstart against the sidecar over TCP + CURVE", async function () {
      this.timeout(900_000);
      const run = await composeProject(this, "jaxbridge-test", [], { JAXBRIDGE_PYTHON_BASE: pythonBase, JAXBRIDGE_NODE_BASE: nodeBase, JAXBRIDGE_PORT: String(await freePort()) });
      try {
        must(await run("build", "-q"), "compose build");
        must(await run("up", "-d"), "compose up -d");
        const app = must(await run("ps", "-q", "app"), "compose ps").trim();
        assert.ok(app, "compose created no app container");
        const exit = must(await sh("docker", ["wait", app], { timeoutMs: 300_000 }), "docker wait app").trim();
        const logs = must(await run("logs", "--no-color", "app"), "compose logs app");
        assert.equal(exit, "0", `the app exited ${exit}:\n${logs}`);
        assert.match(logs, /jaxbridge: JAX \S+ on cpu \(cpu:0\), Python 3\.13/);
        assert.ok(logs.includes("x @ w = array([[ 4.5, -0.5],"), logs);
        assert.ok(logs.includes("column sums = array([14. , -2.5], dtype=float32)"), logs);
        assert.ok(logs.includes("jax.random.normal(key(0), (3,)) = array([-0.20584214, -0.78476578,  1.81608667])"), logs);
        const sidecar = must(await run("ps", "-q", "sidecar"), "compose ps").trim();
        const health = must(await sh("docker", ["inspect", "--format", "{{.State.Health.Status}}", sidecar]), "docker inspect").trim();
        assert.equal(health, "healthy");
        // Published on the host's loopback only.
        const ports = must(await sh("docker", ["port", sidecar, "5555"]), "docker port");
        assert.match(ports.trim(), /^127\.0\.0\.1:\d+$/);
      } finally {
        await run("down", "-v", "--remove-orphans", "-t", "2");
      }
    });

    it("the \"cluster\" profile: two sidecar containers form one jax.distributed job that examples/cluster.ts drives over TCP + CURVE", async function () {
      this.timeout(900_000);
      const run = await composeProject(this, "jaxbridge-cluster", ["--profile", "cluster"], { JAXBRIDGE_PYTHON_BASE: pythonBase, JAXBRIDGE_NODE_BASE: nodeBase });
      try {
        must(await run("build", "-q"), "compose build");
        must(await run("up", "-d", "cluster-app"), "compose up -d cluster-app");
        const app = must(await run("ps", "-aq", "cluster-app"), "compose ps").trim();
        assert.ok(app, "compose created no cluster-app container");
        const exit = must(await sh("docker", ["wait", app], { timeoutMs: 300_000 }), "docker wait cluster-app").trim();
        const logs = must(await run("logs", "--no-color", "cluster-app"), "compose logs cluster-app");
        assert.equal(exit, "0", `the app exited ${exit}:\n${logs}`);
        assert.ok(logs.includes("cluster: 2 processes, devices 0@p0, 1@p0, 2048@p1, 2049@p1"), logs);
        assert.ok(logs.includes("w = [2.000, -3.000], b = 0.500"), logs);
      } finally {
        await run("down", "-v", "--remove-orphans", "-t", "2");
      }
    });
  });
});
