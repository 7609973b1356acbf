/**
 * Where the sidecar's Python environment is found and how setup builds it:
 * the shared naming (scripts/lib/env-cache.mjs), connect()'s lookup
 * (src/python-env.ts), the lock that serialises setups, the pins that
 * pyproject repeats from the locks, and a failed or interrupted setup that
 * must leave nothing that looks complete. Real files, real processes; the
 * full install (network, minutes) is scripts/consumer-test.mjs, run by CI.
 */
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { cacheRoot, envName, envsRoot, findEnv, isCheckout, packageHash, venvPython } from "../../scripts/lib/env-cache.mjs";
import { findSidecarPython } from "../../src/wire/python-env.js";

const ROOT = resolve(import.meta.dirname, "..", "..");
const LIB = join(ROOT, "scripts", "lib");

/** A package laid out as npm installs it: node_modules/jaxbridge with python/ and the scripts. */
function fakeInstalled(base: string, { lock }: { lock?: string } = {}): string {
  const pkg = join(base, "node_modules", "jaxbridge");
  mkdirSync(join(pkg, "python", "jaxbridge_sidecar"), { recursive: true });
  cpSync(join(ROOT, "scripts"), join(pkg, "scripts"), { recursive: true });
  cpSync(join(ROOT, "package.json"), join(pkg, "package.json"));
  for (const f of ["pyproject.toml", "README.md", "LICENSE"]) cpSync(join(ROOT, "python", f), join(pkg, "python", f));
  writeFileSync(join(pkg, "python", "requirements.lock"), lock ?? readFileSync(join(ROOT, "python", "requirements.lock"), "utf8"));
  writeFileSync(join(pkg, "python", "jaxbridge_sidecar", "__init__.py"), "# a stand-in sidecar\n");
  return pkg;
}

/** A published environment as setup leaves it: ready.json naming a venv whose bin/python exists. */
function publish(envs: string, name: string, id: string, python = process.execPath): string {
  const keyDir = join(envs, name);
  mkdirSync(join(keyDir, id, "bin"), { recursive: true });
  symlinkSync(python, venvPython(join(keyDir, id)));
  writeFileSync(join(keyDir, "ready.json"), JSON.stringify({ schema: "jaxbridge-env-1", env: id, python: { full: "3.0.0", exe: python, path: python } }));
  return venvPython(join(keyDir, id));
}

describe("the sidecar's environment", function () {
  let tmp: string;
  beforeEach(() => {
    tmp = mkdtempSync(join(tmpdir(), "jaxbridge-env-test-"));
  });
  afterEach(() => rmSync(tmp, { recursive: true, force: true }));

  describe("naming (env-cache)", () => {
    it("the cache honours JAXBRIDGE_CACHE_DIR, then XDG_CACHE_HOME (absolute only)", () => {
      assert.equal(cacheRoot({ JAXBRIDGE_CACHE_DIR: join(tmp, "c") }), join(tmp, "c"));
      if (process.platform === "linux") {
        assert.equal(cacheRoot({ XDG_CACHE_HOME: join(tmp, "x") }), join(tmp, "x", "jaxbridge"));
        assert.notEqual(cacheRoot({ XDG_CACHE_HOME: "relative" }), join("relative", "jaxbridge"));
      }
      assert.equal(envsRoot({ JAXBRIDGE_CACHE_DIR: tmp }), join(tmp, "envs"));
    });

    it("a checkout has package-lock.json and is not under node_modules; an installed package is neither", () => {
      assert.equal(isCheckout(ROOT), true);
      const pkg = fakeInstalled(tmp);
      writeFileSync(join(pkg, "package-lock.json"), "{}"); // even with one, node_modules says installed
      assert.equal(isCheckout(pkg), false);
    });

    it("the hash covers the lock, the pyproject and the sidecar's sources, not caches", () => {
      const pkg = fakeInstalled(tmp);
      const h0 = packageHash(pkg);
      assert.match(h0, /^[0-9a-f]{16}$/);
      mkdirSync(join(pkg, "python", "jaxbridge_sidecar", "__pycache__"));
      writeFileSync(join(pkg, "python", "jaxbridge_sidecar", "__pycache__", "x.pyc"), "compiled");
      mkdirSync(join(pkg, "python", "jaxbridge_sidecar.egg-info"));
      writeFileSync(join(pkg, "python", "jaxbridge_sidecar.egg-info", "PKG-INFO"), "x");
      assert.equal(packageHash(pkg), h0, "__pycache__ and egg-info do not change the hash");
      const changes: [string, string][] = [
        ["python/requirements.lock", "numpy==2.0.0\n"],
        ["python/pyproject.toml", "[project]\nname = 'x'\n"],
        ["python/jaxbridge_sidecar/__init__.py", "# changed\n"],
        ["python/jaxbridge_sidecar/program/__init__.py", ""], // a new subpackage
      ];
      const seen = new Set([h0]);
      for (const [rel, text] of changes) {
        mkdirSync(join(pkg, rel, ".."), { recursive: true });
        writeFileSync(join(pkg, rel), text);
        const h = packageHash(pkg);
        assert.ok(!seen.has(h), `changing ${rel} changes the hash`);
        seen.add(h);
      }
      assert.equal(envName("0123456789abcdef", [3, 13, 1]), "py3.13-0123456789abcdef");
    });

    it("findEnv picks the newest complete Python line for this package's hash", () => {
      const pkg = fakeInstalled(tmp);
      const env = { JAXBRIDGE_CACHE_DIR: join(tmp, "cache") };
      const envs = envsRoot(env);
      assert.equal(findEnv(pkg, env), null, "no cache folder at all");
      const hash = packageHash(pkg);
      const py12 = publish(envs, envName(hash, [3, 12]), "v-a");
      publish(envs, envName("f".repeat(16), [3, 14]), "v-b"); // another package's
      mkdirSync(join(envs, envName(hash, [3, 13]), "v-c", "bin"), { recursive: true }); // a build with no ready.json
      assert.equal(findEnv(pkg, env)?.python, py12);
      // ready.json naming a folder that is gone is not an environment.
      const keyDir14 = join(envs, envName(hash, [3, 14]));
      mkdirSync(keyDir14, { recursive: true });
      writeFileSync(join(keyDir14, "ready.json"), JSON.stringify({ schema: "jaxbridge-env-1", env: "v-gone" }));
      assert.equal(findEnv(pkg, env)?.python, py12);
      const py13 = publish(envs, envName(hash, [3, 13]), "v-d");
      assert.equal(findEnv(pkg, env)?.python, py13, "3.13 beats 3.12");
      // A pointer outside its folder is refused.
      writeFileSync(join(keyDir14, "ready.json"), JSON.stringify({ schema: "jaxbridge-env-1", env: "../py3.13" }));
      assert.equal(findEnv(pkg, env)?.python, py13);
    });
  });

  describe("connect()'s lookup (findSidecarPython)", () => {
    it("an installed package without an environment fails with the command to run and where it builds", () => {
      const pkg = fakeInstalled(tmp);
      const env = { JAXBRIDGE_CACHE_DIR: join(tmp, "cache") };
      assert.throws(() => findSidecarPython(env, pkg), (e: Error) => {
        assert.match(e.message, /run `npx jaxbridge setup`/);
        assert.ok(e.message.includes(join(tmp, "cache", "envs")), e.message);
        assert.match(e.message, /JAXBRIDGE_PYTHON_BIN/);
        return true;
      });
    });

    it("finds the cached environment, and the explicit settings before it", () => {
      const pkg = fakeInstalled(tmp);
      const env = { JAXBRIDGE_CACHE_DIR: join(tmp, "cache") };
      const py = publish(envsRoot(env), envName(packageHash(pkg), [3, 13]), "v-x");
      assert.deepEqual(findSidecarPython(env, pkg), { python: py, source: "cache" });
      assert.deepEqual(findSidecarPython({ ...env, JAXBRIDGE_PYTHON_BIN: "/some/python" }, pkg), { python: "/some/python", source: "JAXBRIDGE_PYTHON_BIN" });
      assert.throws(() => findSidecarPython({ ...env, JAXBRIDGE_VENV: "nowhere" }, pkg), /at .*nowhere \(JAXBRIDGE_VENV\): run `npx jaxbridge setup` with the same JAXBRIDGE_VENV/);
      // An installed package never uses a .venv inside node_modules (an old setup's leftover).
      mkdirSync(join(pkg, ".venv", "bin"), { recursive: true });
      symlinkSync(process.execPath, venvPython(join(pkg, ".venv")));
      assert.equal(findSidecarPython(env, pkg).source, "cache");
    });

    it("a checkout uses its .venv, and says `npm run setup` when there is none", () => {
      const co = join(tmp, "checkout");
      mkdirSync(join(co, "python", "jaxbridge_sidecar"), { recursive: true });
      for (const f of ["requirements.lock", "pyproject.toml"]) cpSync(join(ROOT, "python", f), join(co, "python", f));
      writeFileSync(join(co, "package-lock.json"), "{}");
      const env = { JAXBRIDGE_CACHE_DIR: join(tmp, "cache") };
      assert.throws(() => findSidecarPython(env, co), /run `npm run setup` \(it builds one in .*\.venv\)/);
      mkdirSync(join(co, ".venv", "bin"), { recursive: true });
      symlinkSync(process.execPath, venvPython(join(co, ".venv")));
      assert.deepEqual(findSidecarPython(env, co), { python: venvPython(join(co, ".venv")), source: "checkout .venv" });
    });
  });

  describe("the setup lock (lockfile.mjs)", () => {
    /** A node process that takes the lock, logs in/out around a pause, and releases it. */
    const holder = (lock: string, log: string, id: string, pauseMs: number) =>
      spawn(
        process.execPath,
        [
          "--input-type=module",
          "-e",
          `import { acquireLock } from ${JSON.stringify(join(LIB, "lockfile.mjs"))};
           import { appendFileSync } from "node:fs";
           const release = await acquireLock(${JSON.stringify(lock)});
           appendFileSync(${JSON.stringify(log)}, "${id} in\\n");
           await new Promise((r) => setTimeout(r, ${pauseMs}));
           appendFileSync(${JSON.stringify(log)}, "${id} out\\n");
           release();`,
        ],
        { stdio: "inherit" },
      );
    const exit = (c: ReturnType<typeof spawn>) => new Promise<number | null>((res) => c.once("exit", (code) => res(code)));

    it("admits one holder at a time", async function () {
      this.timeout(60_000);
      const lock = join(tmp, "setup.lock");
      const log = join(tmp, "log");
      writeFileSync(log, "");
      const kids = ["a", "b", "c", "d"].map((id) => holder(lock, log, id, 150));
      assert.deepEqual(await Promise.all(kids.map(exit)), [0, 0, 0, 0]);
      const lines = readFileSync(log, "utf8").trim().split("\n");
      assert.equal(lines.length, 8);
      for (let i = 0; i < lines.length; i += 2) {
        const [id, what] = lines[i]!.split(" ");
        assert.equal(what, "in");
        assert.equal(lines[i + 1], `${id} out`, `holders interleaved: ${lines.join(", ")}`);
      }
      assert.equal(existsSync(lock), false, "the last holder removed the lock");
    });

    it("takes over a lock whose owner died, and waits for one being written", async function () {
      this.timeout(60_000);
      const lock = join(tmp, "setup.lock");
      const dead = spawnSync(process.execPath, ["-e", "console.log(process.pid)"], { encoding: "utf8" });
      const host = hostname();
      writeFileSync(lock, `${dead.stdout.trim()}\n${host}\n`);
      const log = join(tmp, "log");
      writeFileSync(log, "");
      assert.equal(await exit(holder(lock, log, "a", 10)), 0);
      assert.equal(readFileSync(log, "utf8"), "a in\na out\n");
      // An empty lock file is one whose owner is writing it right now: not stale (for 5 s).
      writeFileSync(lock, "");
      const r = spawnSync(
        process.execPath,
        ["--input-type=module", "-e", `import { acquireLock } from ${JSON.stringify(join(LIB, "lockfile.mjs"))}; await acquireLock(${JSON.stringify(lock)}, { giveUpMs: 1200 });`],
        { encoding: "utf8" },
      );
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /gave up waiting for/);
    });
  });

  describe("the pins pyproject repeats (pins.mjs)", () => {
    const pins = (code: string): string =>
      execFileSync(process.execPath, ["--input-type=module", "-e", `import * as p from ${JSON.stringify(join(LIB, "pins.mjs"))};\n${code}`], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });

    it("python/pyproject.toml pins exactly what the locks pin", () => {
      assert.equal(pins(`console.log(JSON.stringify(p.checkPyproject(${JSON.stringify(ROOT)})))`).trim(), "[]");
    });

    it("a drifted pin is named, and --write restores it", () => {
      const co = join(tmp, "co");
      mkdirSync(join(co, "python"), { recursive: true });
      for (const f of ["requirements.lock", "requirements-test.lock", "pyproject.toml"]) cpSync(join(ROOT, "python", f), join(co, "python", f));
      const py = join(co, "python", "pyproject.toml");
      const original = readFileSync(py, "utf8");
      writeFileSync(py, original.replace(/"equinox==[^"]+"/, '"equinox>=0.13"'));
      const drift = JSON.parse(pins(`console.log(JSON.stringify(p.checkPyproject(${JSON.stringify(co)})))`)) as string[];
      assert.equal(drift.length, 1, drift.join("; "));
      assert.match(drift[0]!, /equinox.*not an exact pin.*equinox==/);
      writeFileSync(py, pins(`process.stdout.write(p.syncedPyproject(${JSON.stringify(co)}))`));
      assert.equal(readFileSync(py, "utf8"), original);
    });

    it("markers select one pin per Python line, as pip would", () => {
      const out = JSON.parse(
        pins(`const l = p.parseLock(${JSON.stringify(readFileSync(join(ROOT, "python", "requirements.lock"), "utf8"))});
              console.log(JSON.stringify([p.pinsFor(l, [3, 11]), p.pinsFor(l, [3, 13])]))`),
      ) as Record<string, string>[];
      const lockText = readFileSync(join(ROOT, "python", "requirements.lock"), "utf8");
      for (const [i, version] of [[0, "3.11"], [1, "3.13"]] as const) {
        const jax = out[i]!.jax!;
        assert.ok(lockText.includes(`jax==${jax}; python_version ${version === "3.11" ? "<" : ">="} "3.12"`), `jax ${jax} for ${version}`);
      }
      assert.notEqual(out[0]!.jax, out[1]!.jax);
      assert.throws(() => pins(`p.parseLock("jax>=0.10\\n")`), /not an exact pin/);
      assert.throws(() => pins(`p.parseLock('jax==1; sys_platform == "linux"\\n')`), /unsupported marker/);
    });
  });

  describe("a setup that fails or is interrupted", () => {
    const setupEnv = (cache: string): NodeJS.ProcessEnv => ({
      ...process.env,
      JAXBRIDGE_CACHE_DIR: cache,
      JAXBRIDGE_INSTALLER: "pip",
      // No index: pip cannot find the package, at once and without the network.
      PIP_NO_INDEX: "1",
      PIP_FIND_LINKS: "",
      JAXBRIDGE_VENV: "",
    });
    const leftovers = (keyParent: string): string[] =>
      existsSync(keyParent) ? readdirSync(keyParent).flatMap((k) => readdirSync(join(keyParent, k)).map((n) => `${k}/${n}`)) : [];

    it("leaves no ready.json, no build folder and no lock when an install fails", function () {
      this.timeout(120_000);
      const pkg = fakeInstalled(tmp, { lock: "jaxbridge-no-such-package==1.0\n" });
      const cache = join(tmp, "cache");
      const r = spawnSync(process.execPath, [join(pkg, "scripts", "setup.mjs")], { cwd: tmp, encoding: "utf8", env: setupEnv(cache) });
      assert.equal(r.status, 1, r.stdout + r.stderr);
      assert.match(r.stderr, /FAILED: installing the Python requirements failed/);
      assert.match(r.stderr, /jaxbridge-no-such-package/);
      const left = leftovers(join(cache, "envs"));
      assert.deepEqual(left.filter((n) => !n.endsWith("/setup.log")), [], `left behind: ${left.join(", ")}`);
    });

    it("an interrupted build is never published", async function () {
      this.timeout(120_000);
      const pkg = fakeInstalled(tmp, { lock: "jaxbridge-no-such-package==1.0\n" });
      const cache = join(tmp, "cache");
      const child = spawn(process.execPath, [join(pkg, "scripts", "setup.mjs")], { cwd: tmp, env: setupEnv(cache), stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      await new Promise<void>((res, rej) => {
        child.stdout!.on("data", (d: Buffer) => {
          out += d.toString();
          if (out.includes("building ")) res();
        });
        child.once("exit", (code) => rej(new Error(`setup exited (${code}) before building: ${out}`)));
      });
      child.kill("SIGTERM");
      const code = await new Promise<number | null>((res) => child.once("exit", (c) => res(c)));
      assert.equal(code, 143);
      const keys = readdirSync(join(cache, "envs"));
      assert.equal(keys.length, 1);
      assert.equal(existsSync(join(cache, "envs", keys[0]!, "ready.json")), false, "nothing published");
      assert.equal(existsSync(join(cache, "envs", keys[0]!, "setup.lock")), false, "the lock released");
      assert.equal(findEnv(pkg, { JAXBRIDGE_CACHE_DIR: cache }), null);
    });
  });
});
