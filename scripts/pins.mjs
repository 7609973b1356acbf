#!/usr/bin/env node
// python/pyproject.toml repeats the locks' pins (see scripts/lib/pins.mjs).
//   node scripts/pins.mjs           check; exits 1 and says what differs
//   node scripts/pins.mjs --write   rewrite pyproject's lists from the locks
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "./lib/common.mjs";
import { checkPyproject, syncedPyproject } from "./lib/pins.mjs";

if (process.argv.includes("--write")) {
  writeFileSync(join(REPO_ROOT, "python", "pyproject.toml"), syncedPyproject(REPO_ROOT));
}
const problems = checkPyproject(REPO_ROOT);
if (problems.length) {
  console.error(`jaxbridge pins: python/pyproject.toml disagrees with the locks:\n${problems.map((p) => `  - ${p}`).join("\n")}\nrun \`node scripts/pins.mjs --write\``);
  process.exit(1);
}
console.log("jaxbridge pins: python/pyproject.toml matches python/requirements.lock and requirements-test.lock");
