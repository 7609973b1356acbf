// Making virtual environments and installing into them, with uv when it is
// there and pip otherwise. uv resolves, downloads and links in parallel from
// its own cache (a second environment with the same wheels is hard links);
// pip is what every CPython has. Both install exactly the pins they are given.
//
//   JAXBRIDGE_INSTALLER  uv | pip | auto (default: uv when found, else pip)
//   JAXBRIDGE_UV         the uv executable (default: `uv` on PATH)
import { execFileSync } from "node:child_process";
import { accessSync, constants, rmSync } from "node:fs";
import { resolve } from "node:path";
import { REPO_ROOT } from "./common.mjs";
import { whichNoShims } from "./python.mjs";

export class InstallerNotFound extends Error {}

// --no-compile: byte-compiling all of jax/scipy/pyarrow up front takes longer than the whole
// rest of the install (18.7s vs 7.9s measured); Python compiles what it imports, once, lazily.
const PIP_FLAGS = ["--no-input", "--progress-bar", "off", "--disable-pip-version-check", "--no-compile"];

function uvPath(env) {
  if (env.JAXBRIDGE_UV) {
    const p = resolve(REPO_ROOT, env.JAXBRIDGE_UV);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      throw new InstallerNotFound(`JAXBRIDGE_UV=${env.JAXBRIDGE_UV} is not an executable file`);
    }
  }
  return whichNoShims("uv");
}

function uvVersion(path) {
  try {
    return execFileSync(path, ["--version"], { encoding: "utf8", timeout: 20000 }).trim().split(/\s+/)[1] ?? "?";
  } catch (e) {
    throw new InstallerNotFound(`${path} --version failed: ${e.message.split("\n")[0]}`);
  }
}

/**
 * The installer to use: {name, describe, makeVenv(py, dir, {seed}), install(vpy, args)}.
 * `step(cmd, args, {what})` runs a command (logged, throwing on failure).
 */
export function chooseInstaller(step, env = process.env) {
  const want = (env.JAXBRIDGE_INSTALLER || "auto").toLowerCase();
  if (!["auto", "uv", "pip"].includes(want)) throw new InstallerNotFound(`JAXBRIDGE_INSTALLER=${env.JAXBRIDGE_INSTALLER}: expected uv, pip or auto`);
  const uv = want === "pip" ? null : uvPath(env);
  if (want === "uv" && !uv) throw new InstallerNotFound("JAXBRIDGE_INSTALLER=uv but no uv on PATH (pip install uv, or set JAXBRIDGE_UV)");
  if (uv) {
    const version = uvVersion(uv);
    return {
      name: "uv",
      describe: `uv ${version} (${uv})`,
      async makeVenv(py, dir, { seed = false } = {}) {
        rmSync(dir, { recursive: true, force: true });
        await step(uv, ["venv", "--quiet", "--python", py.path, ...(seed ? ["--seed"] : []), dir], { what: "creating the virtual environment" });
      },
      async install(vpy, args, what) {
        return step(uv, ["pip", "install", "--python", vpy, ...args], { what });
      },
    };
  }
  return {
    name: "pip",
    describe: "pip (no uv found; JAXBRIDGE_INSTALLER=uv or uv on PATH is faster)",
    async makeVenv(py, dir) {
      rmSync(dir, { recursive: true, force: true });
      await step(py.path, ["-m", "venv", dir], { what: "creating the virtual environment" });
    },
    async install(vpy, args, what) {
      return step(vpy, ["-m", "pip", "install", ...PIP_FLAGS, ...args], { what });
    },
  };
}
