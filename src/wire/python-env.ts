import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository (or installed package) root: the folder holding package.json and python/. */
export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

/**
 * The Python that runs the embedded sidecar: `JAXBRIDGE_PYTHON_BIN` if set,
 * else the project's virtual environment made by `npm run setup`
 * (`JAXBRIDGE_VENV`, default `.venv`).
 */
export function sidecarPython(): string {
  const explicit = process.env.JAXBRIDGE_PYTHON_BIN;
  if (explicit) return explicit;
  const venv = resolve(PACKAGE_ROOT, process.env.JAXBRIDGE_VENV ?? ".venv");
  const bin = process.platform === "win32" ? join(venv, "Scripts", "python.exe") : join(venv, "bin", "python");
  if (existsSync(bin)) return bin;
  throw new Error(
    `no Python environment for the sidecar at ${venv}: run \`npm run setup\` (or set JAXBRIDGE_PYTHON_BIN to a Python with jaxbridge-sidecar installed)`,
  );
}
