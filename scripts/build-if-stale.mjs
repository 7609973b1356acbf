#!/usr/bin/env node
// Build dist/ (tsc -p tsconfig.build.json) only when it is missing or older
// than a file it is built from: src/, the tsconfigs, package.json. The
// README test imports "jaxbridge", which resolves through package.json's
// `exports` to dist/, the built package a user gets; a checkout otherwise
// runs src/ through tsx and never needs a build. Up to date, this costs a
// directory walk (well under a second); a build is 15-60 s on a loaded
// machine. Unlike `npm run build` it does not empty dist/ first, so a file
// deleted from src/ leaves its old output behind until the next clean build
// (`npm pack` always does one).
//
//   node scripts/build-if-stale.mjs [--quiet]
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { REPO_ROOT, run } from "./lib/common.mjs";

/** The newest modification time (ms) of the files under `dir`. */
function newestUnder(dir) {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestUnder(p) : statSync(p).mtimeMs);
  }
  return newest;
}

/** Why dist/ needs a build, or null when it is up to date. */
export function staleReason(root = REPO_ROOT) {
  const built = join(root, "dist", "index.js");
  if (!existsSync(built)) return "dist/ has not been built";
  const builtAt = statSync(built).mtimeMs;
  const inputs = ["tsconfig.json", "tsconfig.build.json", "package.json"].map((f) => join(root, f));
  const newestInput = Math.max(newestUnder(join(root, "src")), ...inputs.filter(existsSync).map((f) => statSync(f).mtimeMs));
  return newestInput > builtAt ? "a source is newer than dist/" : null;
}

/** Build when stale; resolves with tsc's exit code (0 when nothing was to do). */
export async function buildIfStale({ quiet = false } = {}) {
  const why = staleReason();
  if (why === null) {
    if (!quiet) console.log("jaxbridge build: dist/ is up to date");
    return 0;
  }
  const tsc = join(REPO_ROOT, "node_modules", "typescript", "bin", "tsc");
  if (!existsSync(tsc)) {
    console.error("jaxbridge build: typescript is not installed (npm ci installs the dev dependencies)");
    return 1;
  }
  const t = Date.now();
  if (!quiet) console.log(`jaxbridge build: ${why}; tsc -p tsconfig.build.json`);
  const r = await run(process.execPath, [tsc, "-p", "tsconfig.build.json"], { tee: true });
  if (!quiet && r.code === 0) console.log(`jaxbridge build: built dist/ in ${((Date.now() - t) / 1000).toFixed(1)} s`);
  return r.code ?? 1;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  process.exit(await buildIfStale({ quiet: process.argv.includes("--quiet") }));
}
