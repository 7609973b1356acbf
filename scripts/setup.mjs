#!/usr/bin/env node
// jaxbridge setup: make node_modules and the sidecar's Python environment match
// the lock files. Idempotent; when nothing changed it only compares stamps.
//
//   node scripts/setup.mjs [--test] [--quiet] [--verbose]
//
//   --test     also install the test-only Python packages (pytest, lerax oracle)
//   --quiet    print nothing unless something is installed or fails
//   --verbose  stream npm/pip output (also JAXBRIDGE_SETUP_VERBOSE=1)
//
// Environment: JAXBRIDGE_VENV (default .venv, relative to the repo root),
// JAXBRIDGE_PYTHON (interpreter to build the venv with; default: the newest
// CPython >= 3.11 from pyenv installs and PATH, see scripts/lib/python.mjs).
//
// Stamps: node_modules/.jaxbridge-lock.sha256 (sha256 of package-lock.json) and
// <venv>/.jaxbridge-setup.sha256 (lock files, pyproject, interpreter, mode).
// Each is written only after its install succeeded, and removed before one starts.
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { basename, dirname, join } from "node:path";
import { fmtSeconds, onInterrupt, readText, REPO_ROOT, run, sha256, sha256File, show, showCommand, sleep, tail, venvDir, venvPython } from "./lib/common.mjs";
import { choosePython, cmpVersion, PythonNotFound } from "./lib/python.mjs";

// Installed with --no-deps into test venvs on Python >= 3.13 only (its metadata
// requires 3.13; it pulls in diffrax, optax, tensorboard, ... that the oracle
// does not need: lerax.utils imports only jax, equinox, jaxtyping and numpy,
// which python/requirements.lock pins).
const TEST_NO_DEPS = { requirements: ["lerax==0.0.5"], minPython: [3, 13] };
const STAMP_SCHEMA = "jaxbridge-setup-1";

const argv = process.argv.slice(2);
if (argv.includes("--help") || argv.includes("-h")) {
  console.log("usage: node scripts/setup.mjs [--test] [--quiet] [--verbose]");
  process.exit(0);
}
for (const a of argv) {
  if (!["--test", "--quiet", "--verbose"].includes(a)) {
    console.error(`jaxbridge setup: unknown option ${a} (usage: node scripts/setup.mjs [--test] [--quiet] [--verbose])`);
    process.exit(2);
  }
}
const TEST = argv.includes("--test");
const QUIET = argv.includes("--quiet");
const VERBOSE = argv.includes("--verbose") || /^(1|true|yes)$/i.test(process.env.JAXBRIDGE_SETUP_VERBOSE ?? "");

const STATE_DIR = join(REPO_ROOT, ".jaxbridge");
const LOCK_PATH = join(STATE_DIR, "setup.lock");
const LOG_PATH = join(STATE_DIR, "setup.log");
const NODE_MODULES = join(REPO_ROOT, "node_modules");
const NODE_STAMP = join(NODE_MODULES, ".jaxbridge-lock.sha256");
const PACKAGE_LOCK = join(REPO_ROOT, "package-lock.json");
const PY_FILES = {
  lock: join(REPO_ROOT, "python", "requirements.lock"),
  testLock: join(REPO_ROOT, "python", "requirements-test.lock"),
  pyproject: join(REPO_ROOT, "python", "pyproject.toml"),
};

const t0 = Date.now();
let installing = false; // once true, progress lines print even with --quiet

function say(msg) {
  if (!QUIET || installing) console.log(`jaxbridge setup: ${msg}`);
}

class SetupError extends Error {
  constructor(message, { command = null, output = null } = {}) {
    super(message);
    this.command = command;
    this.output = output;
  }
}

// ---------------------------------------------------------------- lock

let lockHeld = false;

function releaseLock() {
  if (!lockHeld) return;
  lockHeld = false;
  try {
    if (readText(LOCK_PATH)?.split("\n")[0] === String(process.pid)) rmSync(LOCK_PATH, { force: true });
  } catch {
    /* best effort */
  }
}

function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === "EPERM";
  }
}

/** One setup at a time per checkout: concurrent `npm test`s would otherwise pip-install into the same venv. */
async function acquireLock() {
  mkdirSync(STATE_DIR, { recursive: true });
  let waitedSince = null;
  for (;;) {
    try {
      const fd = openSync(LOCK_PATH, "wx");
      writeSync(fd, `${process.pid}\n${hostname()}\n`);
      closeSync(fd);
      lockHeld = true;
      return;
    } catch (e) {
      if (e.code !== "EEXIST") throw e;
    }
    const [pidText, host] = (readText(LOCK_PATH) ?? "").split("\n");
    const pid = Number(pidText);
    if (host === hostname() && (!pid || !pidAlive(pid))) {
      rmSync(LOCK_PATH, { force: true }); // stale: its owner died
      continue;
    }
    if (waitedSince === null) {
      waitedSince = Date.now();
      say(`waiting for another setup (pid ${pidText || "?"} on ${host || "?"}) to finish; remove ${show(LOCK_PATH)} if it is stale`);
    } else if (Date.now() - waitedSince > 45 * 60 * 1000) {
      throw new SetupError(`gave up waiting for ${show(LOCK_PATH)} (held by pid ${pidText} on ${host})`);
    }
    await sleep(500);
  }
}

// ---------------------------------------------------------------- commands

let logStarted = false;

function startLog() {
  if (logStarted) return;
  logStarted = true;
  mkdirSync(STATE_DIR, { recursive: true });
  writeFileSync(LOG_PATH, `# jaxbridge setup log, ${new Date().toISOString()}\n`);
}

async function step(cmd, args, { env = process.env, what } = {}) {
  const line = showCommand(cmd, args);
  startLog();
  try {
    writeFileSync(LOG_PATH, `\n$ ${line}\n`, { flag: "a" });
  } catch {
    /* ignore */
  }
  const started = Date.now();
  const r = await run(cmd, args, { env, tee: VERBOSE, logFile: LOG_PATH });
  if (r.code !== 0) {
    const how = r.error ? `could not start (${r.error.code ?? r.error.message})` : r.signal ? `was killed by ${r.signal}` : `exited with code ${r.code}`;
    throw new SetupError(`${what ?? "a step"} failed: command ${how}`, { command: line, output: r.output });
  }
  return { ...r, ms: Date.now() - started };
}

// ---------------------------------------------------------------- node

function nodeWanted() {
  if (existsSync(PACKAGE_LOCK)) return { stamp: `lock:${sha256File(PACKAGE_LOCK)}`, hasLock: true };
  return { stamp: `nolock:${sha256File(join(REPO_ROOT, "package.json"))}`, hasLock: false };
}

/**
 * Whether node_modules already holds exactly what package-lock.json lists,
 * according to npm's own record of the tree (node_modules/.package-lock.json).
 * Lets a tree installed by hand be adopted without deleting it.
 */
function treeMatchesLock() {
  try {
    const lock = JSON.parse(readFileSync(PACKAGE_LOCK, "utf8")).packages;
    const hidden = JSON.parse(readFileSync(join(NODE_MODULES, ".package-lock.json"), "utf8")).packages;
    if (!lock || !hidden) return false;
    for (const [key, want] of Object.entries(lock)) {
      if (key === "" || !key.includes("node_modules/")) continue; // the root and workspace folders
      const have = hidden[key];
      if (!have) {
        if (want.optional || want.devOptional || want.peer) continue; // e.g. another platform's binaries
        return false;
      }
      if (!have.link && !existsSync(join(REPO_ROOT, key))) return false; // removed by hand
      if (want.version !== have.version || (want.integrity && have.integrity && want.integrity !== have.integrity)) return false;
      if (Boolean(want.link) !== Boolean(have.link) || (want.link && want.resolved !== have.resolved)) return false;
    }
    for (const key of Object.keys(hidden)) if (key && !(key in lock)) return false; // extraneous
    return true;
  } catch {
    return false;
  }
}

function nodeStatus() {
  const want = nodeWanted();
  if (!existsSync(NODE_MODULES)) return { ok: false, want, why: "node_modules is missing" };
  const have = readText(NODE_STAMP)?.trim();
  if (have === want.stamp) return { ok: true, want };
  if (want.hasLock && treeMatchesLock()) return { ok: false, adopt: true, want };
  const why = !want.hasLock
    ? "package.json changed (no package-lock.json)"
    : have
      ? "package-lock.json changed since the last install"
      : "node_modules was not installed from the current package-lock.json";
  return { ok: false, want, why };
}

/** npm's environment inside a lifecycle script, minus what would steer a nested install. */
function nestedNpmEnv() {
  const keep = /^(registry|@[^:]+:registry|cache|userconfig|globalconfig|cafile|ca|cert|key|proxy|https?_proxy|noproxy|strict_ssl|fetch_.*|offline|prefer_offline|prefer_online|maxsockets|_auth.*|\/\/.*)$/i;
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^npm_config_/i.test(k)) {
      if (keep.test(k.slice("npm_config_".length)) && v !== "") env[k] = v;
    } else if (!/^npm_(lifecycle_|package_|command$|execpath$|node_execpath$)/i.test(k)) {
      env[k] = v;
    }
  }
  return env;
}

function npmCommand() {
  const execpath = process.env.npm_execpath;
  if (execpath && /npm-cli\.[cm]?js$/.test(basename(execpath)) && existsSync(execpath)) return [process.execPath, [execpath]];
  return [process.platform === "win32" ? "npm.cmd" : "npm", []];
}

async function ensureNode(status) {
  if (status.adopt) {
    writeFileSync(NODE_STAMP, `${status.want.stamp}\n`);
    say("node_modules already matches package-lock.json (recorded)");
    return;
  }
  rmSync(NODE_STAMP, { force: true });
  const [cmd, pre] = npmCommand();
  const sub = status.want.hasLock ? "ci" : "install";
  say(`${status.why}: running npm ${sub}`);
  const r = await step(cmd, [...pre, sub, "--include=dev", "--no-audit", "--no-fund"], { env: nestedNpmEnv(), what: `npm ${sub}` });
  writeFileSync(NODE_STAMP, `${status.want.stamp}\n`);
  say(`node_modules installed (${fmtSeconds(r.ms)})`);
}

// ---------------------------------------------------------------- python

function pyStamp(py, mode) {
  const parts = {
    schema: STAMP_SCHEMA,
    mode,
    lock: sha256File(PY_FILES.lock),
    testLock: sha256File(PY_FILES.testLock),
    pyproject: sha256File(PY_FILES.pyproject),
    python: { version: py.full, level: py.level, exe: py.exe, freethreaded: py.freethreaded },
    testNoDeps: TEST_NO_DEPS,
  };
  return `${mode}:${sha256(JSON.stringify(parts))}`;
}

function pythonStatus(py, venv) {
  const stampPath = join(venv, ".jaxbridge-setup.sha256");
  const want = pyStamp(py, TEST ? "test" : "runtime");
  const acceptable = TEST ? [want] : [want, pyStamp(py, "test")]; // a test venv is a superset
  const have = readText(stampPath)?.trim();
  const ok = existsSync(venvPython(venv)) && acceptable.includes(have);
  return { ok, want, stampPath, had: have ?? null };
}

function parseCfg(text) {
  const cfg = {};
  for (const line of text.split(/\r?\n/)) {
    const m = /^\s*([^=#]+?)\s*=\s*(.*?)\s*$/.exec(line);
    if (m) cfg[m[1].toLowerCase()] = m[2];
  }
  return cfg;
}

function realpathOr(p) {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

/** What to do with the venv folder: {action: "create" | "rebuild" | "reuse", why}. */
function inspectVenv(venv, py) {
  if (!existsSync(venv)) return { action: "create" };
  const cfgText = readText(join(venv, "pyvenv.cfg"));
  if (cfgText === null) {
    let entries = [];
    try {
      entries = readdirSync(venv);
    } catch {
      /* not a folder */
    }
    if (entries.length === 0) return { action: "rebuild", why: "the folder is empty" };
    throw new SetupError(`${show(venv)} exists but is not a virtual environment (no pyvenv.cfg); refusing to clear it. Remove it or point JAXBRIDGE_VENV elsewhere.`);
  }
  const cfg = parseCfg(cfgText);
  const version = cfg.version_info ?? cfg.version;
  if (version && version.split(".").slice(0, 3).join(".") !== py.full) return { action: "rebuild", why: `it was made by Python ${version}, now ${py.full}` };
  // Same version from another installation (another pyenv root, system vs pyenv): rebuild too.
  const sameBase = cfg.executable ? realpathOr(cfg.executable) === py.exe : cfg.home ? realpathOr(cfg.home) === dirname(py.exe) : true;
  if (!sameBase) return { action: "rebuild", why: `it was made by ${cfg.executable ?? cfg.home}, now ${py.exe}` };
  if (!existsSync(venvPython(venv))) return { action: "rebuild", why: `${show(venvPython(venv))} is missing` };
  return { action: "reuse" };
}

async function ensurePython(py, venv, status) {
  rmSync(status.stampPath, { force: true }); // an interrupted install must leave no stamp
  const state = inspectVenv(venv, py);
  if (state.action === "create") {
    say(`creating ${show(venv)} with Python ${py.full}`);
    await step(py.path, ["-m", "venv", venv], { what: "creating the virtual environment" });
  } else if (state.action === "rebuild") {
    say(`rebuilding ${show(venv)}: ${state.why}`);
    await step(py.path, ["-m", "venv", "--clear", venv], { what: "rebuilding the virtual environment" });
  } else {
    say(`updating ${show(venv)} (${status.had ? "lock files or mode changed" : "no completed install recorded"})`);
  }
  const vpy = venvPython(venv);
  // --no-compile: byte-compiling all of jax/scipy/pyarrow up front takes longer than the whole
  // rest of the install (18.7s vs 7.9s measured); Python compiles what it imports, once, lazily.
  const pip = ["-m", "pip", "install", "--no-input", "--progress-bar", "off", "--disable-pip-version-check", "--no-compile"];
  const reqs = ["-r", "python/requirements.lock", ...(TEST ? ["-r", "python/requirements-test.lock"] : [])];
  say(`pip install ${reqs.filter((a) => a !== "-r").join(" + ")}`);
  let r = await step(vpy, [...pip, ...reqs], { what: "installing the Python requirements" });
  say(`  done (${fmtSeconds(r.ms)}); pip install --no-deps -e python (the sidecar)`);
  r = await step(vpy, [...pip, "--no-deps", "-e", "python"], { what: "installing the sidecar package" });
  if (TEST) {
    if (cmpVersion(py.version, TEST_NO_DEPS.minPython) >= 0) {
      say(`  done (${fmtSeconds(r.ms)}); pip install --no-deps ${TEST_NO_DEPS.requirements.join(" ")} (test oracle)`);
      r = await step(vpy, [...pip, "--no-deps", ...TEST_NO_DEPS.requirements], { what: "installing the test oracle" });
    } else {
      say(`  done (${fmtSeconds(r.ms)}); skipping ${TEST_NO_DEPS.requirements.join(" ")}: needs Python >= ${TEST_NO_DEPS.minPython.join(".")}, this is ${py.full}`);
    }
  }
  const check = [
    "import importlib.util as u, sys",
    "import jax, jaxlib, numpy, zmq, msgpack, pyarrow, equinox, jaxtyping, ml_dtypes",
    "assert u.find_spec('jaxbridge_sidecar'), 'jaxbridge_sidecar is not importable'",
    ...(TEST ? ["import pytest"] : []),
    "print(f'python {sys.version.split()[0]}, jax {jax.__version__}, numpy {numpy.__version__}')",
  ].join("\n");
  r = await step(vpy, ["-c", check], { what: "checking the installed packages import" });
  const tmp = `${status.stampPath}.${process.pid}.tmp`;
  writeFileSync(tmp, `${status.want}\n`);
  renameSync(tmp, status.stampPath);
  say(`${show(venv)} ready: ${r.output.trim().split("\n").pop()}`);
}

// ---------------------------------------------------------------- main

function fail(error) {
  releaseLock();
  if (error instanceof SetupError || error instanceof PythonNotFound) {
    console.error(`jaxbridge setup: FAILED: ${error.message}`);
    if (error.command) console.error(`jaxbridge setup: command: ${error.command}`);
    if (error.output) {
      console.error(`jaxbridge setup: last lines of its output:`);
      console.error(tail(error.output, 40).replace(/^/gm, "  | "));
      if (existsSync(LOG_PATH)) console.error(`jaxbridge setup: full log: ${show(LOG_PATH)}`);
    }
  } else {
    console.error(`jaxbridge setup: FAILED: ${error?.stack ?? error}`);
  }
  process.exit(1);
}

async function main() {
  onInterrupt(releaseLock);
  process.on("exit", releaseLock);

  const venv = venvDir();
  const [py, nodeFirst] = await Promise.all([choosePython(), Promise.resolve(nodeStatus())]);
  const pyFirst = pythonStatus(py, venv);
  const pyLine = `Python ${py.full} at ${py.path}: ${py.why}`;
  if (nodeFirst.ok && pyFirst.ok) {
    say(`up to date in ${fmtSeconds(Date.now() - t0)}: node_modules, ${show(venv)}${TEST ? " (with test extras)" : ""}; ${pyLine}`);
    return;
  }

  installing = true;
  say(`${pyLine}${py.also ? `; ${py.also}` : ""}`);
  await acquireLock();
  // Re-check under the lock: a concurrent setup may have done the work meanwhile.
  const nodeNow = nodeStatus();
  if (!nodeNow.ok) await ensureNode(nodeNow);
  const pyNow = pythonStatus(py, venv);
  if (!pyNow.ok) await ensurePython(py, venv, pyNow);
  releaseLock();
  say(`done in ${fmtSeconds(Date.now() - t0)}`);
}

main().catch(fail);
