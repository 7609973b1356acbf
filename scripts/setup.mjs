#!/usr/bin/env node
// jaxbridge setup: build the sidecar's Python environment from the lock files
// (and, in a checkout, node_modules from package-lock.json). Idempotent: when
// nothing changed it only compares stamps.
//
//   npx jaxbridge setup [--force] [--quiet] [--verbose]
//       in a project that depends on jaxbridge: one environment per Python line
//       in the per-user cache (~/.cache/jaxbridge/envs/py3.13-<hash>, see
//       scripts/lib/env-cache.mjs), shared by every project on the machine
//       that uses the same jaxbridge, outside node_modules so `npm ci` keeps
//       it; connect() finds it there. Nothing is installed into node_modules.
//   npm run setup [-- --test]  (node scripts/setup.mjs)
//       in a checkout: node_modules (npm ci) and .venv with the sidecar
//       installed editable from python/; --test adds the test-only packages.
//
//   --test     (checkout) also install the test-only Python packages (pytest, lerax oracle)
//   --force    rebuild the environment even if it looks complete
//   --quiet    print nothing unless something is installed or fails
//   --verbose  stream npm/pip/uv output (also JAXBRIDGE_SETUP_VERBOSE=1)
//
// Environment: JAXBRIDGE_PYTHON (the interpreter to build from; default: the
// newest CPython >= 3.11 among pyenv installs and PATH, see lib/python.mjs),
// JAXBRIDGE_VENV (build this virtual environment in place instead: relative
// to the package root; a checkout's default is .venv), JAXBRIDGE_CACHE_DIR
// (instead of the per-user cache), JAXBRIDGE_INSTALLER and JAXBRIDGE_UV (uv
// or pip, see lib/installer.mjs).
//
// Stamps: node_modules/.jaxbridge-lock.sha256 (sha256 of package-lock.json),
// <venv>/.jaxbridge-setup.sha256 (lock files, pyproject, interpreter, mode) for
// an in-place venv, ready.json for a cached one. Each is written only after
// its install succeeded, and removed (or not yet written) before one starts.
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fmtSeconds, onInterrupt, readText, REPO_ROOT, run, sha256, sha256File, show, showCommand, tail, venvDir, venvPython } from "./lib/common.mjs";
import { ENV_SCHEMA, cacheRoot, envName, envsRoot, isCheckout, packageHash, READY_FILE, readReady } from "./lib/env-cache.mjs";
import { chooseInstaller, InstallerNotFound } from "./lib/installer.mjs";
import { acquireLock } from "./lib/lockfile.mjs";
import { nestedNpmEnv, npmCommand } from "./lib/npm.mjs";
import { checkPyproject, parseLock, pinsFor } from "./lib/pins.mjs";
import { choosePython, cmpVersion, PythonNotFound } from "./lib/python.mjs";

// Installed with --no-deps into test venvs on Python >= 3.13 only (its metadata
// requires 3.13; it pulls in diffrax, optax, tensorboard, ... that the oracle
// does not need: lerax.utils imports only jax, equinox, jaxtyping and numpy,
// which python/requirements.lock pins).
const TEST_NO_DEPS = { requirements: ["lerax==0.0.5"], minPython: [3, 13] };
const STAMP_SCHEMA = "jaxbridge-setup-1";
const OPTIONS = ["--test", "--force", "--quiet", "--verbose"];
const USAGE = "usage: jaxbridge setup [--force] [--quiet] [--verbose] (in a checkout also --test)";
const HELP = `Usage: jaxbridge setup [options]

Build the sidecar's Python environment with the pinned JAX. In a project that
depends on jaxbridge it goes into the per-user cache (${envsRoot()}),
one per Python line, shared by every project that uses this jaxbridge and kept
by \`npm ci\`; connect() finds it there. In a checkout: node_modules and .venv.

Options:
  --force     rebuild the environment even if it looks complete
  --quiet     print nothing unless something is installed or fails
  --verbose   stream the output of npm, pip or uv
  --test      (a checkout) also install the test-only Python packages
  -h, --help  display this help

Environment:
  JAXBRIDGE_PYTHON     the CPython to build from (default: the newest >= 3.11, pyenv installs included)
  JAXBRIDGE_CACHE_DIR  instead of the per-user cache
  JAXBRIDGE_VENV       build this virtual environment in place instead
  JAXBRIDGE_INSTALLER  uv, pip or auto (default: uv when it is on PATH, else pip)
  JAXBRIDGE_UV         the uv executable to use`;

const argv = process.argv.slice(2);
if (argv.includes("--help") || argv.includes("-h")) {
  console.log(HELP);
  process.exit(0);
}
for (const a of argv) {
  if (!OPTIONS.includes(a)) {
    console.error(`jaxbridge setup: unknown option ${a} (${USAGE})`);
    process.exit(2);
  }
}
const TEST = argv.includes("--test");
const FORCE = argv.includes("--force");
const QUIET = argv.includes("--quiet");
const VERBOSE = argv.includes("--verbose") || /^(1|true|yes)$/i.test(process.env.JAXBRIDGE_SETUP_VERBOSE ?? "");

/** A development checkout installs node_modules and an editable .venv; an installed package only its environment. */
const CHECKOUT = isCheckout(REPO_ROOT);
/** Where the environment goes: the per-user cache, unless a checkout or JAXBRIDGE_VENV names a folder. */
const IN_CACHE = !CHECKOUT && !process.env.JAXBRIDGE_VENV;

const NODE_MODULES = join(REPO_ROOT, "node_modules");
const NODE_STAMP = join(NODE_MODULES, ".jaxbridge-lock.sha256");
const PACKAGE_LOCK = join(REPO_ROOT, "package-lock.json");
const PY_FILES = {
  lock: join(REPO_ROOT, "python", "requirements.lock"),
  testLock: join(REPO_ROOT, "python", "requirements-test.lock"),
  pyproject: join(REPO_ROOT, "python", "pyproject.toml"),
};
// The sidecar's sources that a non-editable install builds from (copied out first: building in
// place would write build/ and *.egg-info into the package, which may be read-only).
const SIDECAR_SOURCES = ["pyproject.toml", "README.md", "LICENSE", "jaxbridge_sidecar"];

/** Where this run keeps its lock and log: the checkout's .jaxbridge/, else beside the environment. */
let stateDir = CHECKOUT ? join(REPO_ROOT, ".jaxbridge") : join(cacheRoot(), "state");
const logPath = () => join(stateDir, "setup.log");

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

// ---------------------------------------------------------------- lock and commands

let releaseLock = () => {};
/** A partly built cached environment, removed if this run is interrupted or fails. */
let building = null;

function cleanup() {
  if (building) for (const dir of [building, `${building}.src`]) rmSync(dir, { recursive: true, force: true });
  building = null;
  releaseLock();
}

async function lock(path) {
  try {
    releaseLock = await acquireLock(path, {
      onWait: (holder) => say(`waiting for another setup (${holder}) to finish; remove ${show(path)} if it is stale`),
    });
  } catch (e) {
    throw new SetupError(e.message);
  }
}

let logStarted = false;

function startLog() {
  if (logStarted) return;
  logStarted = true;
  mkdirSync(stateDir, { recursive: true });
  writeFileSync(logPath(), `# jaxbridge setup log, ${new Date().toISOString()}\n`);
}

async function step(cmd, args, { env = process.env, what } = {}) {
  const line = showCommand(cmd, args);
  startLog();
  try {
    writeFileSync(logPath(), `\n$ ${line}\n`, { flag: "a" });
  } catch {
    /* ignore */
  }
  const started = Date.now();
  const r = await run(cmd, args, { env, tee: VERBOSE, logFile: logPath() });
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
  // JAXBRIDGE_SKIP_PREPARE: the dev flow runs src/ through tsx, so `prepare` need not build dist/ (scripts/prepare.mjs).
  const r = await step(cmd, [...pre, sub, "--include=dev", "--no-audit", "--no-fund"], { env: { ...nestedNpmEnv(), JAXBRIDGE_SKIP_PREPARE: "1" }, what: `npm ${sub}` });
  writeFileSync(NODE_STAMP, `${status.want.stamp}\n`);
  say(`node_modules installed (${fmtSeconds(r.ms)})`);
}

// ---------------------------------------------------------------- python: shared steps

/** What to install and check for this interpreter: the lock's pins (and the test lock's with --test). */
function wantedPins(py) {
  const pins = pinsFor(parseLock(readFileSync(PY_FILES.lock, "utf8"), "python/requirements.lock"), py.version);
  if (TEST) Object.assign(pins, pinsFor(parseLock(readFileSync(PY_FILES.testLock, "utf8"), "python/requirements-test.lock"), py.version));
  return pins;
}

/** Imports everything the sidecar needs and compares every installed version with the lock. */
async function checkEnv(vpy, py) {
  const check = [
    "import importlib.metadata as md, importlib.util as u, json, sys",
    "import jax, jaxlib, numpy, zmq, msgpack, pyarrow, equinox, jaxtyping, ml_dtypes",
    "assert u.find_spec('jaxbridge_sidecar'), 'jaxbridge_sidecar is not importable'",
    ...(TEST ? ["import pytest"] : []),
    "want = json.loads(sys.argv[1])",
    "bad = [f'{n}=={v} wanted, {md.version(n)} installed' for n, v in want.items() if md.version(n) != v]",
    "assert not bad, 'not the locked versions: ' + '; '.join(bad)",
    "print(f'python {sys.version.split()[0]}, jax {jax.__version__}, numpy {numpy.__version__}, equinox {equinox.__version__}')",
  ].join("\n");
  const r = await step(vpy, ["-c", check, JSON.stringify(wantedPins(py))], { what: "checking the installed packages import and match the lock" });
  return r.output.trim().split("\n").pop();
}

/** Copy the sidecar's sources to `dest` (for a non-editable install that must not write into the package). */
function copySidecarSources(dest) {
  rmSync(dest, { recursive: true, force: true });
  mkdirSync(dest, { recursive: true });
  for (const name of SIDECAR_SOURCES) {
    cpSync(join(REPO_ROOT, "python", name), join(dest, name), {
      recursive: true,
      filter: (src) => !/(^|[\\/])(__pycache__|[^\\/]*\.egg-info|build)$|\.pyc$/.test(src),
    });
  }
  return dest;
}

/** Install the locked packages and the sidecar into the venv at `dir`; returns the check's summary line. */
async function installInto(installer, py, dir, { editable }) {
  const vpy = venvPython(dir);
  const reqs = ["-r", PY_FILES.lock, ...(TEST ? ["-r", PY_FILES.testLock] : [])];
  say(`${installer.name} install ${reqs.filter((a) => a !== "-r").map(show).join(" + ")}`);
  let r = await installer.install(vpy, reqs, "installing the Python requirements");
  if (editable) {
    say(`  done (${fmtSeconds(r.ms)}); ${installer.name} install --no-deps -e python (the sidecar)`);
    r = await installer.install(vpy, ["--no-deps", "-e", join(REPO_ROOT, "python")], "installing the sidecar package");
  } else {
    const src = copySidecarSources(`${dir}.src`);
    say(`  done (${fmtSeconds(r.ms)}); ${installer.name} install --no-deps jaxbridge-sidecar (from ${show(join(REPO_ROOT, "python"))})`);
    try {
      r = await installer.install(vpy, ["--no-deps", src], "installing the sidecar package");
    } finally {
      rmSync(src, { recursive: true, force: true });
    }
  }
  if (TEST) {
    if (cmpVersion(py.version, TEST_NO_DEPS.minPython) >= 0) {
      say(`  done (${fmtSeconds(r.ms)}); ${installer.name} install --no-deps ${TEST_NO_DEPS.requirements.join(" ")} (test oracle)`);
      r = await installer.install(vpy, ["--no-deps", ...TEST_NO_DEPS.requirements], "installing the test oracle");
    } else {
      say(`  done (${fmtSeconds(r.ms)}); skipping ${TEST_NO_DEPS.requirements.join(" ")}: needs Python >= ${TEST_NO_DEPS.minPython.join(".")}, this is ${py.full}`);
    }
  }
  return checkEnv(vpy, py);
}

// ---------------------------------------------------------------- python: a venv in place (a checkout's .venv, or JAXBRIDGE_VENV)

function pyStamp(py, mode) {
  const parts = {
    schema: STAMP_SCHEMA,
    mode,
    editable: CHECKOUT,
    lock: sha256File(PY_FILES.lock),
    testLock: sha256File(PY_FILES.testLock),
    pyproject: sha256File(PY_FILES.pyproject),
    python: { version: py.full, level: py.level, exe: py.exe, freethreaded: py.freethreaded },
    testNoDeps: TEST_NO_DEPS,
    // An installed package's sidecar is a copy, so its sources are part of what was installed.
    ...(CHECKOUT ? {} : { sidecar: packageHash(REPO_ROOT) }),
  };
  return `${mode}:${sha256(JSON.stringify(parts))}`;
}

function venvStatus(py, venv) {
  const stampPath = join(venv, ".jaxbridge-setup.sha256");
  const want = pyStamp(py, TEST ? "test" : "runtime");
  const acceptable = TEST ? [want] : [want, pyStamp(py, "test")]; // a test venv is a superset
  const have = readText(stampPath)?.trim();
  const ok = !FORCE && existsSync(venvPython(venv)) && acceptable.includes(have);
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
  if (FORCE) return { action: "rebuild", why: "--force" };
  const cfg = parseCfg(cfgText);
  const version = cfg.version_info ?? cfg.version;
  if (version && version.split(".").slice(0, 3).join(".") !== py.full) return { action: "rebuild", why: `it was made by Python ${version}, now ${py.full}` };
  // Same version from another installation (another pyenv root, system vs pyenv): rebuild too.
  const sameBase = cfg.executable ? realpathOr(cfg.executable) === py.exe : cfg.home ? realpathOr(cfg.home) === dirname(py.exe) : true;
  if (!sameBase) return { action: "rebuild", why: `it was made by ${cfg.executable ?? cfg.home}, now ${py.exe}` };
  if (!existsSync(venvPython(venv))) return { action: "rebuild", why: `${show(venvPython(venv))} is missing` };
  return { action: "reuse" };
}

async function ensureVenv(installer, py, venv, status) {
  rmSync(status.stampPath, { force: true }); // an interrupted install must leave no stamp
  const state = inspectVenv(venv, py);
  if (state.action === "reuse") {
    say(`updating ${show(venv)} (${status.had ? "lock files or mode changed" : "no completed install recorded"})`);
  } else {
    say(`${state.action === "create" ? "creating" : `rebuilding (${state.why})`} ${show(venv)} with Python ${py.full}`);
    // pip stays available in a checkout's venv (scripts/docker-prepare.sh downloads wheels with it).
    await installer.makeVenv(py, venv, { seed: true });
  }
  const summary = await installInto(installer, py, venv, { editable: CHECKOUT });
  const tmp = `${status.stampPath}.${process.pid}.tmp`;
  writeFileSync(tmp, `${status.want}\n`);
  renameSync(tmp, status.stampPath);
  say(`${show(venv)} ready: ${summary}`);
}

// ---------------------------------------------------------------- python: the shared environment in the per-user cache

function cacheKeyDir(py) {
  return join(envsRoot(), envName(packageHash(REPO_ROOT), py.version));
}

/** The published environment for `py`, if complete and made from this very interpreter (or --force says rebuild). */
function cachedStatus(py) {
  const keyDir = cacheKeyDir(py);
  const found = readReady(keyDir);
  if (!found) return { ok: false, keyDir, why: "none built yet for this package and Python line" };
  if (FORCE) return { ok: false, keyDir, found, why: "--force" };
  if (found.ready.python?.exe !== py.exe) return { ok: false, keyDir, found, why: `it was made by ${found.ready.python?.exe}, now ${py.exe}` };
  return { ok: true, keyDir, found };
}

/** Remove every build folder in `keyDir` but the published one (under the lock: nobody else is building). */
function prune(keyDir, keep) {
  for (const name of readdirSync(keyDir)) {
    if (/^v-[\w.-]+(\.src)?$/.test(name) && name !== keep) rmSync(join(keyDir, name), { recursive: true, force: true });
    if (/^\.?ready\.json\..*\.tmp$/.test(name)) rmSync(join(keyDir, name), { force: true });
  }
}

async function ensureCached(installer, py, status) {
  const { keyDir } = status;
  say(`building ${show(keyDir)} (${status.why}) with ${installer.describe}`);
  const id = `v-${Date.now().toString(36)}-${process.pid}`;
  const dir = join(keyDir, id);
  building = dir;
  await installer.makeVenv(py, dir, { seed: false });
  const summary = await installInto(installer, py, dir, { editable: false });
  const ready = {
    schema: ENV_SCHEMA,
    env: id,
    python: { full: py.full, exe: py.exe, path: py.path },
    installer: installer.name,
    jaxbridge: JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")).version,
    hash: packageHash(REPO_ROOT),
    summary,
    created: new Date().toISOString(),
  };
  const tmp = join(keyDir, `${READY_FILE}.${process.pid}.tmp`);
  writeFileSync(tmp, `${JSON.stringify(ready, null, 2)}\n`);
  renameSync(tmp, join(keyDir, READY_FILE)); // the moment it becomes visible to connect()
  building = null;
  prune(keyDir, id);
  return { dir, summary };
}

// ---------------------------------------------------------------- main

function fail(error) {
  cleanup();
  if (error instanceof SetupError || error instanceof PythonNotFound || error instanceof InstallerNotFound) {
    console.error(`jaxbridge setup: FAILED: ${error.message}`);
    if (error.command) console.error(`jaxbridge setup: command: ${error.command}`);
    if (error.output) {
      console.error(`jaxbridge setup: last lines of its output:`);
      console.error(tail(error.output, 40).replace(/^/gm, "  | "));
      if (existsSync(logPath())) console.error(`jaxbridge setup: full log: ${show(logPath())}`);
    }
  } else {
    console.error(`jaxbridge setup: FAILED: ${error?.stack ?? error}`);
  }
  process.exit(1);
}

async function main() {
  onInterrupt(cleanup);
  process.on("exit", cleanup);
  if (TEST && !CHECKOUT) throw new SetupError("--test installs the test tools into a checkout's .venv; an installed package has no tests to run");
  if (CHECKOUT) {
    // pyproject's pins are what `pip install jaxbridge-sidecar` installs; the venv is built from the locks.
    const drift = checkPyproject(REPO_ROOT);
    if (drift.length) throw new SetupError(`python/pyproject.toml disagrees with the locks:\n${drift.map((d) => `  - ${d}`).join("\n")}\nrun \`node scripts/pins.mjs --write\``);
  }

  const py = await choosePython();
  const pyLine = `Python ${py.full} at ${py.path}: ${py.why}`;
  const nodeFirst = CHECKOUT ? nodeStatus() : { ok: true };

  if (IN_CACHE) {
    const first = cachedStatus(py);
    if (first.ok) {
      say(`up to date in ${fmtSeconds(Date.now() - t0)}: ${first.found.dir} (${first.found.ready.summary ?? `Python ${py.full}`})`);
      return;
    }
    installing = true;
    say(`${pyLine}${py.also ? `; ${py.also}` : ""}`);
    mkdirSync(first.keyDir, { recursive: true });
    stateDir = first.keyDir;
    await lock(join(first.keyDir, "setup.lock"));
    const now = cachedStatus(py); // a concurrent setup may have built it meanwhile
    if (now.ok) {
      say(`built meanwhile by another setup: ${now.found.dir}`);
    } else {
      const installer = chooseInstaller(step);
      const { dir, summary } = await ensureCached(installer, py, now);
      say(`environment ready in ${fmtSeconds(Date.now() - t0)}: ${dir} (${summary})`);
      say(`shared by every project on this machine that uses this jaxbridge with Python ${py.version[0]}.${py.version[1]}; \`npm ci\` leaves it in place`);
    }
    releaseLock();
    return;
  }

  const venv = venvDir();
  const pyFirst = venvStatus(py, venv);
  if (nodeFirst.ok && pyFirst.ok) {
    say(`up to date in ${fmtSeconds(Date.now() - t0)}: ${CHECKOUT ? "node_modules, " : ""}${show(venv)}${TEST ? " (with test extras)" : ""}; ${pyLine}`);
    return;
  }
  installing = true;
  say(`${pyLine}${py.also ? `; ${py.also}` : ""}`);
  if (!CHECKOUT) stateDir = join(cacheRoot(), "state", sha256(venv).slice(0, 16));
  // One setup at a time per checkout: concurrent `npm test`s would otherwise pip-install into the same venv.
  await lock(join(stateDir, "setup.lock"));
  // Re-check under the lock: a concurrent setup may have done the work meanwhile.
  if (CHECKOUT) {
    const nodeNow = nodeStatus();
    if (!nodeNow.ok) await ensureNode(nodeNow);
  }
  const pyNow = venvStatus(py, venv);
  if (!pyNow.ok) await ensureVenv(chooseInstaller(step), py, venv, pyNow);
  releaseLock();
  say(`done in ${fmtSeconds(Date.now() - t0)}`);
}

main().catch(fail);
