// Where the sidecar's Python environment lives for an installed package, and
// how it is named. Shared by scripts/setup.mjs (which builds environments)
// and src/python-env.ts (which finds one when connect() starts a sidecar), so
// the two can never disagree. Node built-ins only.
//
// Layout, under the per-user cache (JAXBRIDGE_CACHE_DIR, else XDG_CACHE_HOME
// or ~/.cache on Linux, ~/Library/Caches on macOS, %LOCALAPPDATA% on Windows):
//
//   jaxbridge/envs/py3.13-<hash>/ready.json   the published environment (written last)
//   jaxbridge/envs/py3.13-<hash>/v-<id>/      the virtual environment it names
//   jaxbridge/envs/py3.13-<hash>/setup.lock   one builder at a time
//
// <hash> covers python/requirements.lock, python/pyproject.toml and the
// sidecar's sources, so every project on the machine with the same jaxbridge
// shares one environment per Python line, and a different version of the
// package never runs against another's sidecar code. A build goes into a fresh
// v-<id> folder and is published by renaming ready.json into place: an
// interrupted build is never mistaken for a complete one, and an environment
// in use is never modified (virtual environments cannot be moved, so the
// folder is built where it stays and only the pointer is swapped).
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { isAbsolute, join, resolve, sep } from "node:path";

export const ENV_SCHEMA = "jaxbridge-env-1";
export const READY_FILE = "ready.json";

/** The Python executable inside a virtual environment. */
export function venvPython(dir) {
  return process.platform === "win32" ? join(dir, "Scripts", "python.exe") : join(dir, "bin", "python");
}

/** The per-user cache folder for jaxbridge. */
export function cacheRoot(env = process.env) {
  if (env.JAXBRIDGE_CACHE_DIR) return resolve(env.JAXBRIDGE_CACHE_DIR);
  if (process.platform === "win32") return join(env.LOCALAPPDATA || join(homedir(), "AppData", "Local"), "jaxbridge", "Cache");
  if (process.platform === "darwin") return join(homedir(), "Library", "Caches", "jaxbridge");
  const xdg = env.XDG_CACHE_HOME;
  return join(xdg && isAbsolute(xdg) ? xdg : join(homedir(), ".cache"), "jaxbridge");
}

export function envsRoot(env = process.env) {
  return join(cacheRoot(env), "envs");
}

/**
 * A development checkout (which keeps its own editable .venv and installs its
 * node_modules) rather than a package installed into someone's node_modules.
 * npm never packs package-lock.json, so an installed copy has none.
 */
export function isCheckout(root) {
  return existsSync(join(root, "package-lock.json")) && !resolve(root).split(sep).includes("node_modules");
}

/** The files an environment is built from, relative to the package root, in a fixed order. */
export function envInputs(root) {
  const out = ["python/requirements.lock", "python/pyproject.toml"];
  const walk = (rel) => {
    const entries = readdirSync(join(root, rel), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      if (e.name.startsWith(".") || e.name === "__pycache__" || e.name.endsWith(".pyc") || e.name.endsWith(".egg-info")) continue;
      const child = `${rel}/${e.name}`;
      if (e.isDirectory()) walk(child);
      else if (e.isFile()) out.push(child);
    }
  };
  walk("python/jaxbridge_sidecar");
  return out;
}

/** 16 hex digits of sha256 over the schema and every input's path and bytes. */
export function packageHash(root) {
  const h = createHash("sha256");
  h.update(`${ENV_SCHEMA}\0`);
  for (const rel of envInputs(root)) {
    h.update(`${rel}\0`);
    h.update(readFileSync(join(root, rel)));
    h.update("\0");
  }
  return h.digest("hex").slice(0, 16);
}

/** The folder name for one Python line: py3.13-<hash>. */
export function envName(hash, version) {
  return `py${version[0]}.${version[1]}-${hash}`;
}

/** The published environment in `keyDir`, {python, dir, ready}, or null if there is none that is complete. */
export function readReady(keyDir) {
  let ready;
  try {
    ready = JSON.parse(readFileSync(join(keyDir, READY_FILE), "utf8"));
  } catch {
    return null;
  }
  if (ready?.schema !== ENV_SCHEMA || typeof ready.env !== "string" || !/^v-[\w.-]+$/.test(ready.env)) return null;
  const dir = join(keyDir, ready.env);
  const python = venvPython(dir);
  return existsSync(python) ? { python, dir, ready } : null;
}

/**
 * The environment built for the package at `root`: among the Python lines
 * set up for its hash, the newest that is complete. {python, dir, keyDir,
 * ready} or null.
 */
export function findEnv(root, env = process.env) {
  const envs = envsRoot(env);
  const hash = packageHash(root);
  let names;
  try {
    names = readdirSync(envs);
  } catch {
    return null;
  }
  const lines = [];
  for (const name of names) {
    const m = /^py(\d+)\.(\d+)-([0-9a-f]{16})$/.exec(name);
    if (m && m[3] === hash) lines.push({ name, version: [Number(m[1]), Number(m[2])] });
  }
  lines.sort((a, b) => b.version[0] - a.version[0] || b.version[1] - a.version[1]);
  for (const { name } of lines) {
    const keyDir = join(envs, name);
    const found = readReady(keyDir);
    if (found) return { ...found, keyDir };
  }
  return null;
}
