import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { envsRoot, findEnv, isCheckout, venvPython } from "../../scripts/lib/env-cache.mjs";

/** The repository (or installed package) root: the folder holding package.json, python/ and scripts/. */
export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

export interface SidecarPython {
  python: string;
  /** Which rule found it. */
  source: "JAXBRIDGE_PYTHON_BIN" | "JAXBRIDGE_VENV" | "checkout .venv" | "cache";
}

/**
 * The Python that runs the embedded sidecar, first found of:
 * `JAXBRIDGE_PYTHON_BIN`; the venv `JAXBRIDGE_VENV` names (relative to the
 * package root); a checkout's `.venv` (`npm run setup`); the environment
 * `npx jaxbridge setup` built for this package in the per-user cache
 * (scripts/lib/env-cache.mjs). Throws with the command to run when none is
 * there: a connect() never builds gigabytes of Python packages behind the
 * caller's back.
 */
export function findSidecarPython(env: NodeJS.ProcessEnv = process.env, root: string = PACKAGE_ROOT): SidecarPython {
  const explicit = env.JAXBRIDGE_PYTHON_BIN;
  if (explicit) return { python: explicit, source: "JAXBRIDGE_PYTHON_BIN" };
  const checkout = isCheckout(root);
  const setup = checkout ? "`npm run setup`" : "`npx jaxbridge setup`";
  if (env.JAXBRIDGE_VENV) {
    const dir = resolve(root, env.JAXBRIDGE_VENV);
    if (existsSync(venvPython(dir))) return { python: venvPython(dir), source: "JAXBRIDGE_VENV" };
    throw new Error(`no Python environment for the sidecar at ${dir} (JAXBRIDGE_VENV): run ${setup} with the same JAXBRIDGE_VENV`);
  }
  if (checkout && existsSync(venvPython(join(root, ".venv")))) return { python: venvPython(join(root, ".venv")), source: "checkout .venv" };
  const found = findEnv(root, env);
  if (found) return { python: found.python, source: "cache" };
  throw new Error(
    `no Python environment for the sidecar: run ${setup} (it builds one ${checkout ? `in ${join(root, ".venv")}` : `in ${envsRoot(env)}, shared by your projects`}), ` +
      "or set JAXBRIDGE_PYTHON_BIN to a Python with jaxbridge-sidecar installed",
  );
}

/** The embedded sidecar's Python (see findSidecarPython). */
export function sidecarPython(): string {
  return findSidecarPython().python;
}
