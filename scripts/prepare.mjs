#!/usr/bin/env node
// npm's `prepare`: runs after `npm install`/`npm ci` in this folder, and when
// npm installs jaxbridge from git (it clones, installs the dev dependencies
// and runs `prepare` before packing). A git install needs dist/ built; the
// dev flow does not (it runs src/ through tsx), so this builds only when
// dist/ is missing, and never inside scripts/setup.mjs's own `npm ci`
// (JAXBRIDGE_SKIP_PREPARE=1), so that `npm test` on a fresh clone does not pay
// for a build it does not use. `npm pack` and `npm publish` always rebuild
// (`prepack`).
import { existsSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT, run } from "./lib/common.mjs";

const skip = /^(1|true|yes)$/i.test(process.env.JAXBRIDGE_SKIP_PREPARE ?? "");
if (skip || existsSync(join(REPO_ROOT, "dist", "index.js"))) process.exit(0);
const tsc = join(REPO_ROOT, "node_modules", "typescript", "bin", "tsc");
if (!existsSync(tsc)) {
  // e.g. `npm ci --omit=dev`: nothing to build with, and nothing here needs dist/.
  console.log("jaxbridge prepare: typescript is not installed; dist/ not built (npm run build after installing the dev dependencies)");
  process.exit(0);
}
console.log("jaxbridge prepare: building dist/ (tsc -p tsconfig.build.json)");
const r = await run(process.execPath, [tsc, "-p", "tsconfig.build.json"], { tee: true });
process.exit(r.code ?? 1);
