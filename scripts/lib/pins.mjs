// The pinned Python sets: python/requirements.lock (runtime) and
// python/requirements-test.lock (tests) are the source; python/pyproject.toml
// repeats them as exact pins so that `pip install jaxbridge-sidecar` on its
// own installs the same set. These helpers read the locks, evaluate their
// (python_version only) markers, and check or rewrite the pyproject's lists.
// Node built-ins only.
import { readFileSync } from "node:fs";
import { join } from "node:path";

/** Lines of a lock: [{name, version, marker, line}]; marker is null or e.g. `python_version >= "3.12"`. */
export function parseLock(text, where = "lock") {
  const pins = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/(^|\s)#.*$/, "").trim();
    if (!line) return;
    const m = /^([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([A-Za-z0-9.+!_-]+)\s*(?:;\s*(.+))?$/.exec(line);
    if (!m) throw new Error(`${where}:${i + 1}: not an exact pin (name==version[; marker]): ${raw.trim()}`);
    pins.push({ name: m[1], version: m[2], marker: m[3] ? normalizeMarker(m[3], `${where}:${i + 1}`) : null, line: i + 1 });
  });
  return pins;
}

/** One canonical spelling of a python_version marker (the only kind the locks use). */
export function normalizeMarker(marker, where = "marker") {
  const m = /^python_version\s*(<=|>=|==|!=|<|>)\s*(["'])(\d+\.\d+)\2$/.exec(marker.trim());
  if (!m) throw new Error(`${where}: unsupported marker ${JSON.stringify(marker)} (only python_version <op> "X.Y" is understood)`);
  return `python_version ${m[1]} "${m[3]}"`;
}

/** Whether a normalized marker holds for Python [major, minor]. */
export function markerHolds(marker, version) {
  if (!marker) return true;
  const [, op, want] = /^python_version (\S+) "(\d+\.\d+)"$/.exec(marker);
  const [a, b] = want.split(".").map(Number);
  const d = version[0] - a || version[1] - b;
  return { "<": d < 0, "<=": d <= 0, ">": d > 0, ">=": d >= 0, "==": d === 0, "!=": d !== 0 }[op];
}

/** {name: version} for the pins that apply to Python [major, minor]. */
export function pinsFor(pins, version) {
  const out = {};
  for (const p of pins) if (markerHolds(p.marker, version)) out[p.name] = p.version;
  return out;
}

export function requirementString(p) {
  return `${p.name}${p.version === null ? p.spec : `==${p.version}`}${p.marker ? `; ${p.marker.replace(/"/g, "'")}` : ""}`;
}

const canon = (name) => name.toLowerCase().replace(/[-_.]+/g, "-");

/** The string items of a TOML array `key = [ ... ]` inside `[section]` of pyproject.toml: {items, start, end} (offsets of the brackets' contents). */
export function tomlArray(text, section, key) {
  const sec = new RegExp(`^\\[${section.replace(/[.[\]]/g, "\\$&")}\\]\\s*$`, "m").exec(text);
  if (!sec) return null;
  const rest = text.slice(sec.index + sec[0].length);
  const nextSec = /^\[/m.exec(rest);
  const body = nextSec ? rest.slice(0, nextSec.index) : rest;
  const k = new RegExp(`^${key}\\s*=\\s*\\[`, "m").exec(body);
  if (!k) return null;
  const start = sec.index + sec[0].length + k.index + k[0].length;
  const end = text.indexOf("]", start);
  const items = [...text.slice(start, end).matchAll(/"((?:[^"\\]|\\.)*)"|'([^']*)'/g)].map((m) => m[1] ?? m[2]);
  return { items, start, end };
}

function parseRequirement(s, where) {
  const [req, marker] = s.split(";").map((x) => x.trim());
  const [, name, spec] = /^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)$/.exec(req) ?? [null, req, ""];
  const exact = /^==\s*([A-Za-z0-9.+!_-]+)$/.exec(spec);
  return { name, version: exact ? exact[1] : null, spec, marker: marker ? normalizeMarker(marker, where) : null };
}

/** Differences between a lock and a pyproject list, as sentences (empty: they agree). */
export function comparePins(lockPins, listed, what) {
  const key = (p) => `${canon(p.name)}|${p.marker ?? ""}`;
  const want = new Map(lockPins.map((p) => [key(p), p]));
  const have = new Map(listed.map((p) => [key(p), p]));
  const out = [];
  for (const [k, p] of want) {
    const h = have.get(k);
    if (!h) out.push(`${what} lacks ${requirementString(p)}`);
    else if (h.version !== p.version) out.push(`${what} has ${requirementString(h)}${h.version ? "" : " (not an exact pin)"}, the lock ${requirementString(p)}`);
  }
  for (const [k, h] of have) if (!want.has(k)) out.push(`${what} has ${requirementString(h)}, which the lock does not list`);
  return out;
}

/** The package's pin files. */
export function readPinFiles(root) {
  const read = (rel) => readFileSync(join(root, rel), "utf8");
  return {
    lock: parseLock(read("python/requirements.lock"), "python/requirements.lock"),
    testLock: parseLock(read("python/requirements-test.lock"), "python/requirements-test.lock"),
    pyproject: read("python/pyproject.toml"),
  };
}

/** Where python/pyproject.toml disagrees with the locks (empty: it agrees). */
export function checkPyproject(root) {
  const { lock, testLock, pyproject } = readPinFiles(root);
  const deps = tomlArray(pyproject, "project", "dependencies");
  const test = tomlArray(pyproject, "project.optional-dependencies", "test");
  if (!deps) return ["python/pyproject.toml has no [project] dependencies list"];
  const out = comparePins(lock, deps.items.map((s) => parseRequirement(s, "pyproject dependencies")), "pyproject [project] dependencies");
  if (test) out.push(...comparePins(testLock, test.items.map((s) => parseRequirement(s, "pyproject test extra")), "pyproject's test extra"));
  else out.push("python/pyproject.toml has no [project.optional-dependencies] test list");
  return out;
}

/** pyproject.toml's text with both lists rewritten from the locks. */
export function syncedPyproject(root) {
  const { lock, testLock, pyproject } = readPinFiles(root);
  let text = pyproject;
  for (const [section, key, pins] of [
    ["project.optional-dependencies", "test", testLock],
    ["project", "dependencies", lock],
  ]) {
    const arr = tomlArray(text, section, key);
    if (!arr) throw new Error(`python/pyproject.toml: no ${key} = [...] in [${section}]`);
    const body = `\n${pins.map((p) => `  "${requirementString(p)}",`).join("\n")}\n`;
    text = text.slice(0, arr.start) + body + text.slice(arr.end);
  }
  return text;
}
