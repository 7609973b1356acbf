#!/usr/bin/env node
// The package as someone else's project gets it: `npm pack`, install the
// tarball into a fresh temporary project, `npx jaxbridge setup`, then ESM and
// CommonJS scripts that connect, jit, scan and read back; `npm ci` there again
// and the same scripts without another setup (the environment lives outside
// node_modules). Also the Python package on its own: a wheel of python/
// installed with pip into a throwaway venv must hold exactly the locked set.
//
//   node scripts/consumer-test.mjs [--installer pip|uv|auto] [--user-cache] [--keep] [--no-wheel]
//
//   --installer   how setup installs (JAXBRIDGE_INSTALLER; default auto: uv when found)
//   --user-cache  use the real per-user cache instead of a fresh one in the temp folder
//                 (shows sharing with other projects; the cold numbers are then not cold)
//   --keep        keep the temporary folder
//   --no-wheel    skip the Python wheel check
//
// Prints what it measured (install time, sizes, the environment's location)
// and closes with `consumer: N passed, N failed`; exits 1 if any check failed.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fmtSeconds, onInterrupt, REPO_ROOT, run, tail } from "./lib/common.mjs";
import { nestedNpmEnv, npmCommand } from "./lib/npm.mjs";
import { checkPyproject, parseLock, pinsFor } from "./lib/pins.mjs";
import { choosePython } from "./lib/python.mjs";

const argv = process.argv.slice(2);
const opt = (name) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const INSTALLER = opt("--installer") ?? process.env.JAXBRIDGE_INSTALLER ?? "auto";
const USER_CACHE = argv.includes("--user-cache");
const KEEP = argv.includes("--keep");
const WHEEL = !argv.includes("--no-wheel");

const work = mkdtempSync(join(tmpdir(), "jaxbridge-consumer-"));
const proj = join(work, "project");
const cache = USER_CACHE ? null : join(work, "cache");
const results = { passed: 0, failed: 0 };
const numbers = [];

function cleanup() {
  if (!KEEP) rmSync(work, { recursive: true, force: true });
}
onInterrupt(cleanup);

function say(msg) {
  console.log(`consumer: ${msg}`);
}

function check(ok, what, detail = "") {
  if (ok) results.passed++;
  else results.failed++;
  say(`${ok ? "ok  " : "FAIL"} ${what}${detail ? `: ${detail}` : ""}`);
  return ok;
}

function measure(label, value) {
  numbers.push([label, value]);
  say(`${label}: ${value}`);
}

/** Bytes under `dir` (files counted once however many hard links), and the file count. */
function sizeOf(dir) {
  const seen = new Set();
  let bytes = 0;
  let files = 0;
  const walk = (p) => {
    let st;
    try {
      st = lstatSync(p);
    } catch {
      return;
    }
    if (st.isDirectory()) {
      for (const e of readdirSync(p)) walk(join(p, e));
    } else if (st.isFile()) {
      files++;
      const key = `${st.dev}:${st.ino}`;
      if (!seen.has(key)) {
        seen.add(key);
        bytes += st.size;
      }
    }
  };
  walk(dir);
  return { bytes, files };
}

const mb = (bytes) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

// The environment of every command: no npm lifecycle variables from an outer `npm run`,
// the temporary cache unless --user-cache, and nothing that would point the sidecar elsewhere.
const baseEnv = (() => {
  const env = nestedNpmEnv();
  for (const k of ["JAXBRIDGE_VENV", "JAXBRIDGE_PYTHON_BIN", "JAXBRIDGE_URL", "JAXBRIDGE_SKIP_PREPARE"]) delete env[k];
  if (cache) env.JAXBRIDGE_CACHE_DIR = cache;
  env.JAXBRIDGE_INSTALLER = INSTALLER;
  return env;
})();

async function sh(cmd, args, { cwd = proj, env = baseEnv, what, quiet = false } = {}) {
  const t = Date.now();
  const r = await run(cmd, args, { cwd, env, tee: !quiet });
  const ms = Date.now() - t;
  if (r.code !== 0) throw new Error(`${what ?? [cmd, ...args].join(" ")} failed (${r.signal ?? `exit ${r.code}`}):\n${tail(r.output, 30)}`);
  return { ...r, ms };
}

const [npm, npmPre] = npmCommand();
const npmRun = (args, o = {}) => sh(npm, [...npmPre, ...args], o);

// One body for both module systems, so ESM and CommonJS check the same things.
// Oracles are computed here in plain JavaScript: tanh by Math.tanh, the scan's
// running sums exactly (small integers in float32).
const BODY = `
async function check(jbx, label) {
  const { connect, jit, jnp, filterScan, array, DeviceArray } = jbx;
  const jb = await connect();
  try {
    const x = array([[1, 2], [3, 4]], "float32");
    const dx = await jb.put(x);
    const f = jit((a) => jnp.tanh(a).sum());
    const y = await f(dx);
    if (!(y instanceof DeviceArray)) throw new Error("jit did not return a DeviceArray");
    const tanhSum = (await y.toHost()).data[0];
    const want = [1, 2, 3, 4].reduce((s, v) => s + Math.tanh(v), 0);
    if (Math.abs(tanhSum - want) > 1e-5) throw new Error("tanh sum " + tanhSum + ", expected " + want);
    const xs = array([[1, 2], [3, 4], [5, 6]], "float32");
    const [c, ys] = await filterScan((carry, row) => [carry.add(row), carry.sum()], await jb.put(array([0, 0], "float32")), xs);
    const carry = Array.from((await c.toHost()).data);
    const sums = Array.from((await ys.toHost()).data);
    if (JSON.stringify(carry) !== "[9,12]" || JSON.stringify(sums) !== "[0,3,10]") throw new Error("scan gave carry " + carry + ", ys " + sums);
    console.log("RESULT " + JSON.stringify({ label, jax: jb.info.jax, python: jb.info.python, backend: jb.info.backend, tanhSum, carry, sums }));
  } finally {
    await jb.close();
  }
}
`;

const SCRIPTS = {
  "main.mjs": `import * as jbx from "jaxbridge";\n${BODY}\nawait check(jbx, "esm");\n`,
  "main.cjs": `const jbx = require("jaxbridge");\n${BODY}\ncheck(jbx, "cjs").catch((e) => { console.error(e); process.exit(1); });\n`,
  // A library error thrown from the compiled code: with --enable-source-maps its stack names the .ts source.
  "stack.cjs": `const { array } = require("jaxbridge");\ntry { array([[1, 2], [3]], "float32"); console.log("no error"); } catch (e) { console.log(e.stack); }\n`,
};

async function runScripts(round) {
  for (const name of ["main.mjs", "main.cjs"]) {
    try {
      const t = Date.now();
      const r = await sh(process.execPath, [name], { what: `node ${name}`, quiet: true });
      const line = r.output.split("\n").find((l) => l.startsWith("RESULT "));
      const res = line ? JSON.parse(line.slice(7)) : null;
      check(Boolean(res), `${round}: node ${name} connects, jits, scans and reads back (${fmtSeconds(Date.now() - t)})`, res ? `jax ${res.jax} on ${res.backend}, Python ${res.python}` : tail(r.output, 10));
    } catch (e) {
      check(false, `${round}: node ${name}`, e.message);
    }
  }
}

/** The published environment for the installed package, read through the package's own code. */
function envInfo() {
  const code = `import { findEnv } from "${join(proj, "node_modules", "jaxbridge", "scripts", "lib", "env-cache.mjs")}";
const f = findEnv(${JSON.stringify(join(proj, "node_modules", "jaxbridge"))});
console.log(JSON.stringify(f));`;
  const out = execFileSync(process.execPath, ["--input-type=module", "-e", code], { env: baseEnv, encoding: "utf8" });
  return JSON.parse(out.trim());
}

async function npmPart() {
  // 1. Pack (prepack builds dist/).
  let t = Date.now();
  const packed = await npmRun(["pack", "--json", "--pack-destination", work], { cwd: REPO_ROOT, what: "npm pack", quiet: true });
  measure("npm pack (with the prepack build)", fmtSeconds(Date.now() - t));
  const info = JSON.parse(packed.output.slice(packed.output.indexOf("[")))[0];
  const tarball = join(work, info.filename);
  const paths = info.files.map((f) => f.path);
  measure("tarball", `${info.filename}, ${mb(info.size)} packed, ${mb(info.unpackedSize)} unpacked, ${paths.length} files`);
  for (const must of ["dist/index.js", "dist/index.d.ts", "dist/cli/main.js", "bin/jaxbridge.mjs", "scripts/setup.mjs", "python/requirements.lock", "python/pyproject.toml", "python/jaxbridge_sidecar/__init__.py", "LICENSE", "README.md", "CHANGELOG.md"]) {
    check(paths.includes(must), `the tarball has ${must}`);
  }
  const unwanted = paths.filter((p) => /^(test|bench|examples|docker|src)\/|^\.ci\/|(^|\/)(Dockerfile|docker-compose\.yml)$|docker-prepare|__pycache__|\.pyc$|\.egg-info|^python\/tests\//.test(p));
  check(unwanted.length === 0, "the tarball has no tests, benchmarks, examples, sources or Docker files", unwanted.slice(0, 8).join(", "));
  const map = paths.find((p) => p === "dist/index.js.map");
  check(Boolean(map), "the tarball has source maps");

  // 2. A fresh project that depends on the tarball.
  mkdirSync(proj, { recursive: true });
  writeFileSync(join(proj, "package.json"), `${JSON.stringify({ name: "consumer", version: "1.0.0", private: true }, null, 2)}\n`);
  for (const [name, text] of Object.entries(SCRIPTS)) writeFileSync(join(proj, name), text);
  t = Date.now();
  await npmRun(["install", "--no-audit", "--no-fund", tarball], { what: "npm install <tarball>", quiet: true });
  measure("npm install <tarball>", fmtSeconds(Date.now() - t));
  const nm = sizeOf(join(proj, "node_modules"));
  const own = sizeOf(join(proj, "node_modules", "jaxbridge"));
  measure("node_modules", `${mb(nm.bytes)} in ${nm.files} files, of which node_modules/jaxbridge ${mb(own.bytes)}`);
  const deps = readdirSync(join(proj, "node_modules"))
    .flatMap((n) => (n.startsWith("@") ? readdirSync(join(proj, "node_modules", n)).map((m) => `${n}/${m}`) : [n]))
    .filter((n) => !n.startsWith("."))
    .map((n) => [n, sizeOf(join(proj, "node_modules", n)).bytes])
    .sort((a, b) => b[1] - a[1]);
  measure("largest in node_modules", deps.slice(0, 6).map(([n, b]) => `${n} ${mb(b)}`).join(", "));
  for (const dev of ["typescript", "mocha", "tsx", "testcontainers", "pythonia", "cli-progress", "esbuild"]) {
    check(!existsSync(join(proj, "node_modules", dev)), `no ${dev} in the consumer's node_modules`);
  }
  check(!existsSync(join(proj, "node_modules", "jaxbridge", ".venv")), "no Python environment inside node_modules/jaxbridge");

  // 3. The command, before any Python exists.
  const version = JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")).version;
  const bin = join(proj, "node_modules", ".bin", "jaxbridge");
  try {
    const help = await sh(bin, ["--help"], { quiet: true });
    check(/\bsetup\b/.test(help.output) && /\brepl\b/.test(help.output), "npx jaxbridge --help lists the commands");
  } catch (e) {
    check(false, "npx jaxbridge --help", e.message);
  }
  try {
    const v = await sh(bin, ["--version"], { quiet: true });
    check(v.output.trim() === version, "npx jaxbridge --version prints the package's version", v.output.trim());
  } catch (e) {
    check(false, "npx jaxbridge --version", e.message);
  }
  try {
    // Keys without Python: no environment exists yet, and none is named.
    const keys = join(work, "keys");
    const k = await sh(bin, ["keygen", "--out", keys, "--name", "c"], { quiet: true });
    const pub = /^public key: (\S{40})$/m.exec(k.output)?.[1];
    const secret = existsSync(join(keys, "c.key_secret")) ? readFileSync(join(keys, "c.key_secret"), "utf8") : "";
    check(Boolean(pub) && secret.includes(`public-key = "${pub}"`) && /secret-key = "\S{40}"/.test(secret), "npx jaxbridge keygen writes a key pair before any Python exists", pub);
  } catch (e) {
    check(false, "npx jaxbridge keygen before setup", e.message);
  }
  {
    // esbuild is an optional peer: the REPL says how to get it instead of crashing.
    const r = await run(bin, ["repl"], { cwd: proj, env: baseEnv });
    check(r.code === 1 && r.output.includes("npm install --save-dev esbuild"), "npx jaxbridge repl without esbuild exits 1 saying how to install it", tail(r.output, 3).replace(/\n/g, " | "));
  }
  if (cache) {
    try {
      await sh(process.execPath, ["main.mjs"], { quiet: true, what: "node main.mjs before setup" });
      check(false, "connect() before setup fails with the command to run", "it succeeded");
    } catch (e) {
      check(/npx jaxbridge setup/.test(e.message), "connect() before setup fails with the command to run", /npx jaxbridge setup/.test(e.message) ? "" : tail(e.message, 5));
    }
  }

  // 4. Setup, cold then warm.
  t = Date.now();
  await sh(npm, [...npmPre, "exec", "--", "jaxbridge", "setup"], { what: "npx jaxbridge setup" });
  const cold = Date.now() - t;
  t = Date.now();
  const warm = await sh(npm, [...npmPre, "exec", "--", "jaxbridge", "setup"], { what: "npx jaxbridge setup (again)", quiet: true });
  measure(`npx jaxbridge setup (${INSTALLER}${USER_CACHE ? ", user cache" : ""})`, `${fmtSeconds(cold)} cold, ${fmtSeconds(Date.now() - t)} when up to date`);
  check(/up to date/.test(warm.output), "a second setup finds the environment up to date");
  const env1 = envInfo();
  check(Boolean(env1), "connect()'s lookup finds the environment", env1?.dir);
  if (env1) {
    const s = sizeOf(env1.dir);
    measure("environment", `${env1.dir} (${mb(s.bytes)} in ${s.files} files, made with ${env1.ready.installer}; ${env1.ready.summary})`);
    check(!env1.dir.includes(`${join(proj, "node_modules")}`), "the environment is outside node_modules");
  }
  check(!existsSync(join(proj, "node_modules", "jaxbridge", "python", "build")) && !readdirSync(join(proj, "node_modules", "jaxbridge", "python")).some((n) => n.endsWith(".egg-info")), "setup wrote nothing into node_modules/jaxbridge/python");

  // 5. Use it.
  await runScripts("after setup");
  try {
    const r = await sh(process.execPath, ["--enable-source-maps", "stack.cjs"], { quiet: true });
    const ts = /node_modules[\\/]jaxbridge[\\/]src[\\/][\w/\\-]+\.ts:\d+:\d+/.exec(r.output);
    check(Boolean(ts), "a library error's stack points into the .ts sources (source maps)", ts ? ts[0] : tail(r.output, 6));
    const m = JSON.parse(readFileSync(join(proj, "node_modules", "jaxbridge", "dist", "index.js.map"), "utf8"));
    check(Array.isArray(m.sourcesContent) && m.sourcesContent.every((c) => typeof c === "string" && c.length > 0), "the source maps carry their sources (no src/ needed)");
  } catch (e) {
    check(false, "source maps", e.message);
  }
  try {
    const r = await sh(join(proj, "node_modules", ".bin", "jaxbridge"), ["doctor"], { quiet: true, what: "jaxbridge doctor" });
    check(/\bok\s*$/.test(r.output.trim()) && r.output.includes(version), "npx jaxbridge doctor says ok", tail(r.output, 3).replace(/\n/g, " | "));
  } catch (e) {
    check(false, "npx jaxbridge doctor", e.message);
  }

  // 6. npm ci deletes node_modules; the environment stays and is found again without a setup.
  t = Date.now();
  await npmRun(["ci", "--no-audit", "--no-fund"], { what: "npm ci", quiet: true });
  measure("npm ci (the consumer's, again)", fmtSeconds(Date.now() - t));
  const env2 = envInfo();
  check(Boolean(env1 && env2) && env2.dir === env1.dir && env2.ready.created === env1.ready.created, "after npm ci the same environment is found, not rebuilt", env2?.dir);
  await runScripts("after npm ci, no setup");
  return version;
}

/** pip install of the wheel of python/ into a throwaway venv installs exactly the locked set. */
async function wheelPart(version) {
  check(checkPyproject(REPO_ROOT).length === 0, "python/pyproject.toml pins exactly what the locks pin", checkPyproject(REPO_ROOT).join("; "));
  const same = (a, b) => createHash("sha256").update(readFileSync(a)).digest("hex") === createHash("sha256").update(readFileSync(b)).digest("hex");
  check(same(join(REPO_ROOT, "LICENSE"), join(REPO_ROOT, "python", "LICENSE")), "python/LICENSE is the package's LICENSE");
  const py = await choosePython();
  const src = join(work, "sidecar-src");
  mkdirSync(src);
  for (const name of ["pyproject.toml", "README.md", "LICENSE", "jaxbridge_sidecar"]) {
    cpSync(join(REPO_ROOT, "python", name), join(src, name), { recursive: true, filter: (p) => !/__pycache__|\.pyc$|\.egg-info/.test(p) });
  }
  const venv = join(work, "wheel-venv");
  const env = { ...baseEnv, PIP_DISABLE_PIP_VERSION_CHECK: "1" };
  let t = Date.now();
  await sh(py.path, ["-m", "venv", venv], { cwd: work, env, quiet: true });
  const vpy = join(venv, "bin", "python");
  await sh(vpy, ["-m", "pip", "wheel", "--no-deps", "-q", "-w", join(work, "wheels"), src], { cwd: work, env, quiet: true, what: "pip wheel python/" });
  const wheel = readdirSync(join(work, "wheels")).find((n) => n.endsWith(".whl"));
  check(wheel === `jaxbridge_sidecar-${version}-py3-none-any.whl`, "the wheel is named for the package's version", wheel);
  await sh(vpy, ["-m", "pip", "install", "-q", "--no-compile", join(work, "wheels", wheel)], { cwd: work, env, quiet: true, what: "pip install <wheel>" });
  measure(`pip install jaxbridge-sidecar (wheel, Python ${py.full})`, fmtSeconds(Date.now() - t));
  const freeze = (await sh(vpy, ["-m", "pip", "freeze", "--all"], { cwd: work, env, quiet: true })).output.trim().split("\n");
  say(`pip freeze:\n${freeze.map((l) => `    ${l}`).join("\n")}`);
  const listed = JSON.parse((await sh(vpy, ["-m", "pip", "list", "--format", "json"], { cwd: work, env, quiet: true })).output.trim().split("\n").pop());
  const got = Object.fromEntries(listed.map(({ name, version: v }) => [name.toLowerCase().replace(/[-_.]+/g, "-"), v]));
  const want = pinsFor(parseLock(readFileSync(join(REPO_ROOT, "python", "requirements.lock"), "utf8")), py.version);
  const wrong = Object.entries(want).filter(([n, v]) => got[n.toLowerCase().replace(/[-_.]+/g, "-")] !== v).map(([n, v]) => `${n}==${v} wanted, ${got[n.toLowerCase().replace(/[-_.]+/g, "-")] ?? "absent"}`);
  check(wrong.length === 0, "pip installed exactly the locked versions", wrong.join("; "));
  const extra = Object.keys(got).filter((n) => !["pip", "setuptools", "jaxbridge-sidecar"].includes(n) && !Object.keys(want).some((w) => w.toLowerCase().replace(/[-_.]+/g, "-") === n));
  check(extra.length === 0, "and nothing the lock does not list", extra.join(", "));
  check(got["jaxbridge-sidecar"] === version, "jaxbridge-sidecar itself is installed", got["jaxbridge-sidecar"]);
  // Every module of the sources is in the installed package (subpackages included).
  const mods = (await sh(vpy, ["-c", "import jaxbridge_sidecar, pkgutil; print('\\n'.join(sorted(m.name for m in pkgutil.walk_packages(jaxbridge_sidecar.__path__, 'jaxbridge_sidecar.'))))"], { cwd: work, env, quiet: true })).output.trim().split("\n");
  const srcMods = [];
  const walk = (dir, prefix) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory() && existsSync(join(dir, e.name, "__init__.py"))) {
        srcMods.push(`${prefix}${e.name}`);
        walk(join(dir, e.name), `${prefix}${e.name}.`);
      } else if (e.isFile() && e.name.endsWith(".py") && e.name !== "__init__.py") srcMods.push(`${prefix}${e.name.slice(0, -3)}`);
    }
  };
  walk(join(src, "jaxbridge_sidecar"), "jaxbridge_sidecar.");
  const missing = srcMods.filter((m) => !mods.includes(m));
  check(missing.length === 0, `the wheel has every module of python/jaxbridge_sidecar (${srcMods.length})`, missing.join(", "));
  try {
    await sh(join(venv, "bin", "jaxbridge-sidecar"), ["--help"], { cwd: work, env, quiet: true });
    check(true, "the jaxbridge-sidecar command runs");
  } catch (e) {
    check(false, "the jaxbridge-sidecar command runs", e.message);
  }
}

const t0 = Date.now();
say(`working in ${work}${cache ? ` (cache ${cache})` : " (the per-user cache)"}; installer ${INSTALLER}`);
let version = null;
try {
  version = await npmPart();
} catch (e) {
  check(false, "the npm part", e.message);
}
if (WHEEL) {
  try {
    await wheelPart(version ?? JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")).version);
  } catch (e) {
    check(false, "the wheel part", e.message);
  }
}
cleanup();
say(`done in ${fmtSeconds(Date.now() - t0)}${KEEP ? `; kept ${work}` : ""}`);
say("numbers:");
for (const [k, v] of numbers) console.log(`  ${k}: ${v}`);
console.log(`consumer: ${results.passed} passed, ${results.failed} failed`);
process.exit(results.failed ? 1 : 0);
