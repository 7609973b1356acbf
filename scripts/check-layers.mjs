#!/usr/bin/env node
// The import rule of ARCHITECTURE.md, checked over src/'s import graph:
// every module imports only its own layer and the layers below it, nothing
// imports in a cycle, and the wire's two packages are imported by the wire
// alone. `node scripts/check-layers.mjs` prints what breaks the rule and
// exits 1; scripts/test.mjs runs it as one of `npm test`'s suites.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, posix, relative, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

/**
 * The layers, lowest first: the one place the order is declared
 * (ARCHITECTURE.md states the same). A module may import its own layer and
 * any layer of a lower rank; layers that share a rank sit beside each other
 * and may not import each other. A layer is a folder under src/ (`api` is
 * the files directly in src/: index.ts and internal.ts); `trace` is
 * src/trace/ without src/trace/lib/.
 */
export const LAYERS = [["values"], ["wire"], ["session"], ["trace", "io"], ["trace/lib", "cluster"], ["equinox"], ["lerax", "optim"], ["api"], ["repl"], ["cli"]];

/**
 * Files outside src/ that src/ may import, with the layer each counts as.
 * env-cache.mjs names and finds the sidecar's Python environment; setup
 * (which runs before src/ is built) and connect() must agree on it, so both
 * import the one file. It may import Node's built-ins only.
 */
export const SHARED = { "scripts/lib/env-cache.mjs": "wire" };

/** Packages only these layers may import (the wire is the only user of ZeroMQ and msgpack). */
export const PACKAGE_OWNERS = { zeromq: ["wire"], msgpackr: ["wire"] };

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

function sourceFiles(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sourceFiles(p));
    else if (/\.(ts|mts)$/.test(name) && !name.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

/** The layer of a file given as a path relative to the root (`src/trace/lib/jnp.ts` → `trace/lib`). */
export function layerOf(rel) {
  const parts = rel.split("/");
  if (SHARED[rel]) return SHARED[rel];
  if (parts[0] !== "src") return null;
  if (parts.length === 2) return "api";
  if (parts[1] === "trace" && parts[2] === "lib" && parts.length > 3) return "trace/lib";
  return parts[1];
}

const RANK = new Map(LAYERS.flatMap((group, rank) => group.map((name) => [name, rank])));

// An import or re-export statement at the start of a line, up to its module
// specifier (the clause may span lines); a bare `import "x"`; `import("x")`.
const STATEMENT = /^[ \t]*(import|export)\b([^;'"]*?)\bfrom\s*["']([^"']+)["']/gm;
const BARE = /^[ \t]*import\s*["']([^"']+)["']/gm;
const DYNAMIC = /\bimport\(\s*["']([^"']+)["']\s*\)/g;

function lineAt(text, index) {
  return text.slice(0, index).split("\n").length;
}

/** Whether a statement's clause names types only (erased at run time, so it cannot take part in a load cycle). */
function typeOnly(clause) {
  const c = clause.trim();
  if (/^type\b/.test(c)) return true;
  const braces = /^\{([\s\S]*)\}$/.exec(c);
  if (!braces) return false;
  const names = braces[1].split(",").map((s) => s.trim()).filter(Boolean);
  return names.length > 0 && names.every((n) => /^type\s/.test(n));
}

/** Every import of one file: `{spec, line, runtime}`. */
export function importsOf(text) {
  const out = [];
  for (const m of text.matchAll(STATEMENT)) out.push({ spec: m[3], line: lineAt(text, m.index), runtime: !typeOnly(m[2]) });
  for (const m of text.matchAll(BARE)) out.push({ spec: m[1], line: lineAt(text, m.index), runtime: true });
  // A dynamic import loads lazily: it obeys the layers but cannot make a load cycle.
  for (const m of text.matchAll(DYNAMIC)) out.push({ spec: m[1], line: lineAt(text, m.index), runtime: false });
  return out;
}

function resolveSpec(fromRel, spec, known) {
  if (!spec.startsWith(".")) return null;
  const base = posix.normalize(posix.join(posix.dirname(fromRel), spec));
  for (const cand of [base, base.replace(/\.js$/, ".ts"), base.replace(/\.mjs$/, ".mts"), `${base}.ts`, `${base}/index.ts`]) if (known.has(cand)) return cand;
  return undefined;
}

function packageName(spec) {
  if (spec.startsWith(".") || spec.startsWith("node:")) return null;
  const parts = spec.split("/");
  return spec.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
}

/** Strongly connected components with more than one file, or a file that imports itself (Tarjan). */
function cycles(graph) {
  let index = 0;
  const idx = new Map();
  const low = new Map();
  const stack = [];
  const on = new Set();
  const found = [];
  const visit = (v) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
    }
    if (low.get(v) === idx.get(v)) {
      const comp = [];
      let w;
      do {
        w = stack.pop();
        on.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || (graph.get(v) ?? new Set()).has(v)) found.push(comp.sort());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!idx.has(v)) visit(v);
  return found;
}

/** One cycle through a strongly connected component, as a path that ends where it starts. */
function cyclePath(graph, comp) {
  const inside = new Set(comp);
  const start = comp[0];
  const prev = new Map();
  const queue = [start];
  while (queue.length) {
    const v = queue.shift();
    for (const w of graph.get(v) ?? []) {
      if (!inside.has(w)) continue;
      if (w === start) {
        const path = [start];
        for (let u = v; u !== start; u = prev.get(u)) path.splice(1, 0, u);
        return [...path, start];
      }
      if (!prev.has(w)) {
        prev.set(w, v);
        queue.push(w);
      }
    }
  }
  return comp;
}

/** The layer order as one line: `values → wire → ... ` (beside each other: `trace | io`). */
export const LAYER_ORDER = LAYERS.map((g) => g.join(" | ")).join(" → ");

/** Check src/ under `root`: `{files, problems}`, each problem one line of text. */
export function checkLayers(root = ROOT) {
  const files = sourceFiles(join(root, "src")).map((p) => relative(root, p).split("\\").join("/")).sort();
  const known = new Set(files);
  const problems = [];
  for (const shared of Object.keys(SHARED)) {
    let text;
    try {
      text = readFileSync(join(root, shared), "utf8");
    } catch {
      continue;
    }
    known.add(shared);
    for (const { spec, line } of importsOf(text)) {
      if (!spec.startsWith("node:")) problems.push(`${shared}:${line}: imports ${spec}; a file src/ shares with the scripts may import Node's built-ins only`);
    }
  }
  const runtime = new Map(files.map((f) => [f, new Set()]));
  for (const file of files) {
    const layer = layerOf(file);
    if (!RANK.has(layer)) {
      problems.push(`${file}: is in no layer; put it in one of ${[...RANK.keys()].join(", ")} (scripts/check-layers.mjs declares them)`);
      continue;
    }
    for (const { spec, line, runtime: isRuntime } of importsOf(readFileSync(join(root, file), "utf8"))) {
      const pkg = packageName(spec);
      if (pkg !== null) {
        const owners = PACKAGE_OWNERS[pkg];
        if (owners && !owners.includes(layer)) problems.push(`${file}:${line}: imports ${pkg}, which only ${owners.join(", ")} may import`);
        continue;
      }
      const target = resolveSpec(file, spec, known);
      if (target === null) continue;
      if (target === undefined) {
        problems.push(`${file}:${line}: imports ${spec}, which is not a file under src/`);
        continue;
      }
      if (isRuntime) runtime.get(file).add(target);
      const to = layerOf(target);
      if (to === layer) continue;
      if (RANK.get(to) < RANK.get(layer)) continue;
      const why = RANK.get(to) === RANK.get(layer) ? `${layer} and ${to} sit beside each other` : `${to} is above ${layer}`;
      problems.push(`${file}:${line}: imports ${target}: ${why}`);
    }
  }
  for (const comp of cycles(runtime)) problems.push(`import cycle: ${cyclePath(runtime, comp).join(" → ")} (run-time imports; break it by moving what both need below them)`);
  return { files, problems };
}

if (process.argv[1] && pathToFileURL(resolve(process.argv[1])).href === import.meta.url) {
  const { files, problems } = checkLayers();
  for (const p of problems) console.log(`  ${p}`);
  console.log(`${files.length} modules, ${problems.length} problem${problems.length === 1 ? "" : "s"} (layers, lowest first: ${LAYER_ORDER})`);
  process.exit(problems.length ? 1 : 0);
}
