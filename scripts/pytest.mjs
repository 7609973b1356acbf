#!/usr/bin/env node
// The Python suite: <venv>/bin/python -m pytest python/tests -q [args...]
// (venv: $JAXBRIDGE_VENV, default .venv). Exit code 5 (no tests collected) counts as success.
import { onInterrupt } from "./lib/common.mjs";
import { runPytest } from "./lib/suites.mjs";

onInterrupt();
const r = await runPytest(process.argv.slice(2), { junit: false });
if (!r.ran) {
  console.error(`jaxbridge pytest: did not run: ${r.note}`);
  process.exit(1);
}
if (r.code === 5) console.log("jaxbridge pytest: no tests collected (not a failure)");
process.exit(r.code === 5 ? 0 : (r.code ?? 1));
