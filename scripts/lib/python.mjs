// Finding the CPython that builds the sidecar's virtual environment.
//
// `$JAXBRIDGE_PYTHON` (a path, relative to the repo root, or a command name)
// wins when set. Otherwise the newest CPython >= 3.11 among: pyenv installs
// (`$PYENV_ROOT` or `~/.pyenv`, `versions/*/bin/python3`: looked at directly,
// because a pyenv shim answers only for the active version), then
// python3.14 .. python3.11 and python3 on PATH (pyenv shim folders skipped).
// Final releases beat pre-releases; among equal versions the first found wins.
import { execFile } from "node:child_process";
import { accessSync, constants, existsSync, readdirSync, realpathSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { basename, delimiter, dirname, join, resolve } from "node:path";
import { IS_WIN, REPO_ROOT } from "./common.mjs";

export const MIN_VERSION = [3, 11];
const PATH_NAMES = ["python3.14", "python3.13", "python3.12", "python3.11", "python3"];

const PROBE = [
  "import sys, os, json, platform, sysconfig, importlib.util as u",
  "print(json.dumps({",
  "  'impl': platform.python_implementation(),",
  "  'version': list(sys.version_info[:3]),",
  "  'level': sys.version_info.releaselevel,",
  "  'full': platform.python_version(),",
  "  'exe': os.path.realpath(sys.executable),",
  "  'in_venv': sys.prefix != sys.base_prefix,",
  "  'venv_ok': u.find_spec('venv') is not None and u.find_spec('ensurepip') is not None,",
  "  'freethreaded': bool(sysconfig.get_config_var('Py_GIL_DISABLED')),",
  "}))",
].join("\n");

export function cmpVersion(a, b) {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d) return d;
  }
  return 0;
}

function isExecutable(path) {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function realpathOr(path) {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/** pyenv roots: $PYENV_ROOT, ~/.pyenv, and the parent of any pyenv `shims` folder on PATH. */
function pyenvRoots() {
  const roots = [];
  const add = (r) => {
    if (r && existsSync(join(r, "versions")) && !roots.includes(realpathOr(r))) roots.push(realpathOr(r));
  };
  add(process.env.PYENV_ROOT);
  add(join(homedir(), ".pyenv"));
  for (const dir of pathDirs()) if (isShimDir(dir)) add(dirname(dir));
  return roots;
}

function pathDirs() {
  return (process.env.PATH || "").split(delimiter).filter(Boolean);
}

function isShimDir(dir) {
  return basename(dir) === "shims" && existsSync(join(dirname(dir), "versions"));
}

/** `name` on PATH, skipping pyenv shims; null if absent. */
export function whichNoShims(name) {
  for (const dir of pathDirs()) {
    if (isShimDir(dir)) continue;
    for (const ext of IS_WIN ? [".exe", ""] : [""]) {
      const p = join(dir, name + ext);
      if (isExecutable(p)) return p;
    }
  }
  return null;
}

/** Every pyenv install's bin/<name>, with the version its folder name claims (or null). */
function pyenvCandidates(name = "python3") {
  const out = [];
  for (const root of pyenvRoots()) {
    let entries = [];
    try {
      entries = readdirSync(join(root, "versions"));
    } catch {
      continue;
    }
    for (const v of entries) {
      const p = join(root, "versions", v, "bin", name);
      if (!isExecutable(p)) continue;
      const m = /^(\d+)\.(\d+)(?:\.(\d+))?(?:[a-z]+\d*)?$/.exec(v);
      out.push({ path: p, source: `pyenv ${v}`, claimed: m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : null });
    }
  }
  return out;
}

/** Run the probe; resolves to the interpreter's facts, or {error}. */
export function probe(path) {
  return new Promise((resolvePromise) => {
    execFile(path, ["-I", "-c", PROBE], { timeout: 20000, windowsHide: true }, (error, stdout, stderr) => {
      if (error) return resolvePromise({ path, error: (stderr.trim() || error.message).split("\n")[0].trim() });
      try {
        resolvePromise({ path, ...JSON.parse(stdout.trim().split("\n").pop()) });
      } catch {
        resolvePromise({ path, error: `unexpected probe output: ${stdout.trim().slice(0, 200)}` });
      }
    });
  });
}

/** Why an interpreter can't be used, or null if it can. */
function rejection(info) {
  if (info.error) return `does not run (${info.error})`;
  if (info.impl !== "CPython") return `${info.impl}, not CPython`;
  if (cmpVersion(info.version, MIN_VERSION) < 0) return `${info.full} is older than ${MIN_VERSION.join(".")}`;
  if (info.in_venv) return "is itself inside a virtual environment";
  if (info.freethreaded) return "is a free-threaded build";
  if (!info.venv_ok) return "lacks the venv/ensurepip modules (on Debian/Ubuntu: apt install python3.X-venv)";
  return null;
}

function better(a, b) {
  // final releases first, then the newest version; ties keep the earlier one.
  const fa = a.level === "final" ? 1 : 0;
  const fb = b.level === "final" ? 1 : 0;
  if (fa !== fb) return fa > fb;
  return cmpVersion(a.version, b.version) > 0;
}

/**
 * Every candidate interpreter, probed in parallel. `series` (e.g. [3, 11])
 * keeps only that minor line. Returns {usable: [...best first], rejected: [...]}.
 */
export async function discover({ series = null } = {}) {
  const candidates = [];
  const seen = new Set();
  const rejected = [];
  const push = (c) => {
    const key = realpathOr(c.path);
    if (seen.has(key)) return;
    seen.add(key);
    candidates.push(c);
  };
  for (const c of pyenvCandidates()) {
    // Skip obviously-too-old pyenv installs without starting them.
    if (c.claimed && (cmpVersion(c.claimed.slice(0, 2), MIN_VERSION) < 0 || (series && cmpVersion(c.claimed.slice(0, 2), series) !== 0))) {
      seen.add(realpathOr(c.path));
      if (!series) rejected.push({ path: c.path, source: c.source, why: `${c.claimed.join(".")} is older than ${MIN_VERSION.join(".")}` });
      continue;
    }
    push(c);
  }
  for (const name of PATH_NAMES) {
    const p = whichNoShims(name);
    if (p) push({ path: p, source: "PATH" });
  }
  const infos = await Promise.all(candidates.map(async (c) => ({ ...c, ...(await probe(c.path)) })));
  const usable = [];
  for (const info of infos) {
    const why = rejection(info);
    if (why) rejected.push({ path: info.path, source: info.source, why });
    else if (series && cmpVersion(info.version.slice(0, 2), series) !== 0) continue;
    else usable.push(info);
  }
  // Stable sort: best first.
  const sorted = [];
  for (const info of usable) {
    let i = sorted.findIndex((s) => better(info, s));
    if (i < 0) i = sorted.length;
    sorted.splice(i, 0, info);
  }
  return { usable: sorted, rejected };
}

export class PythonNotFound extends Error {}

/** Resolve `$JAXBRIDGE_PYTHON` (a path or a command) to a file. */
function resolveExplicit(value) {
  if (value.includes("/") || (IS_WIN && value.includes("\\"))) return resolve(REPO_ROOT, value);
  const onPath = whichNoShims(value);
  if (onPath) return onPath;
  // A pyenv-managed command such as python3.12 whose shim would refuse to run: look in the installs.
  const inPyenv = pyenvCandidates(value);
  return inPyenv.length ? inPyenv : null;
}

/**
 * The interpreter to build the venv with: {path, exe, version, full, level, why}.
 * Throws PythonNotFound with an explanation when there is none.
 */
export async function choosePython({ env = process.env, series = null } = {}) {
  const explicit = env.JAXBRIDGE_PYTHON;
  if (explicit) {
    const resolved = resolveExplicit(explicit);
    if (!resolved) throw new PythonNotFound(`JAXBRIDGE_PYTHON=${explicit}: no such file or command on PATH`);
    const paths = Array.isArray(resolved) ? resolved.map((c) => c.path) : [resolved];
    const infos = await Promise.all(paths.map(probe));
    const ok = infos.filter((i) => !rejection(i));
    if (!ok.length) {
      const why = infos.map((i) => `${i.path}: ${rejection(i)}`).join("; ");
      throw new PythonNotFound(`JAXBRIDGE_PYTHON=${explicit} can't be used: ${why} (need CPython >= ${MIN_VERSION.join(".")})`);
    }
    const best = ok.reduce((a, b) => (better(b, a) ? b : a));
    return { ...best, why: `from JAXBRIDGE_PYTHON=${explicit}` };
  }
  const { usable, rejected } = await discover({ series });
  const want = series ? `CPython ${series.join(".")}.x` : `CPython >= ${MIN_VERSION.join(".")}`;
  if (!usable.length) {
    const lines = rejected.map((r) => `  ${r.path} (${r.source}): ${r.why}`);
    throw new PythonNotFound(
      `no ${want} found among pyenv installs and ${PATH_NAMES.join(", ")} on PATH` +
        (lines.length ? `; looked at:\n${lines.join("\n")}` : "") +
        `\nInstall one (e.g. \`pyenv install 3.13\`) or set JAXBRIDGE_PYTHON to a CPython >= ${MIN_VERSION.join(".")}.`,
    );
  }
  const [best, ...others] = usable;
  const also = others.length ? `also found ${others.map((o) => `${o.full} (${o.source})`).join(", ")}` : "";
  return { ...best, why: `newest ${want} found (${best.source})`, also };
}
