/**
 * Running the sidecar's own command line (`python -m jaxbridge_sidecar ...`)
 * from the project's Python environment, with the terminal passed through.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { PACKAGE_ROOT, sidecarPython } from "../wire/python-env.js";

/** Run `python -m jaxbridge_sidecar <args>` attached to this terminal; resolves with its exit code. */
export function runSidecarCli(args: string[]): Promise<number> {
  return runAttached(sidecarPython(), ["-m", "jaxbridge_sidecar", ...args]);
}

/** Run a Node script of this package (scripts/*.mjs) attached to this terminal. */
export function runScript(script: string, args: string[]): Promise<number> {
  return runAttached(process.execPath, [join(PACKAGE_ROOT, "scripts", script), ...args]);
}

/** Spawn with inherited stdio; SIGINT/SIGTERM are passed on and the child's exit code is returned. */
export function runAttached(cmd: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: "inherit", cwd: process.cwd(), env: { ...process.env, PYTHONUNBUFFERED: "1" } });
    const forward = (sig: NodeJS.Signals) => () => child.kill(sig);
    const onInt = forward("SIGINT");
    const onTerm = forward("SIGTERM");
    process.on("SIGINT", onInt);
    process.on("SIGTERM", onTerm);
    child.once("error", (e) => reject(new Error(`could not run ${cmd}: ${e.message}`)));
    child.once("exit", (code, sig) => {
      process.off("SIGINT", onInt);
      process.off("SIGTERM", onTerm);
      resolve(sig ? 128 + (signalNumber(sig) ?? 1) : (code ?? 1));
    });
  });
}

function signalNumber(sig: NodeJS.Signals): number | undefined {
  return ({ SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 } as Record<string, number>)[sig];
}
