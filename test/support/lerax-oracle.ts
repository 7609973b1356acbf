/**
 * Where lerax 0.0.6's own `utils.py` is (the oracle the team keeps beside
 * the checkout: `shared/oracle/lerax_utils.py` in the checkout's folder or
 * one above it, or `JAXBRIDGE_LERAX_UTILS`), and whether the sidecar's
 * Python can load it (it uses PEP 695 generics: Python >= 3.12). Tests that
 * need it skip with `skipReason` as their one line of explanation.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { sidecarPython } from "../../src/wire/python-env.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

function find(): string | undefined {
  const env = process.env.JAXBRIDGE_LERAX_UTILS;
  if (env) return existsSync(env) ? env : undefined;
  for (let dir = dirname(ROOT), i = 0; i < 3; i++, dir = dirname(dir)) {
    const p = join(dir, "shared", "oracle", "lerax_utils.py");
    if (existsSync(p)) return p;
  }
  return undefined;
}

function probe(): { path: string } | { skipReason: string } {
  const path = find();
  if (!path) return { skipReason: "lerax's utils.py is not beside this checkout (shared/oracle/lerax_utils.py; set JAXBRIDGE_LERAX_UTILS)" };
  const r = spawnSync(sidecarPython(), ["-c", "import sys; print('%d.%d' % sys.version_info[:2])"], { encoding: "utf8", timeout: 60_000 });
  const version = r.stdout.trim();
  const [major, minor] = version.split(".").map(Number);
  if (r.status !== 0 || major === undefined || minor === undefined) return { skipReason: `cannot ask the sidecar's Python for its version: ${r.stderr.trim()}` };
  if (major < 3 || (major === 3 && minor < 12)) return { skipReason: `lerax's utils.py needs Python >= 3.12 (PEP 695 generics); the sidecar runs ${version}` };
  return { path };
}

/** The oracle's path, or why tests that need it are skipped. Probed once, at import. */
export const leraxUtils = probe();
