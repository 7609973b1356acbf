#!/usr/bin/env node
// The `jaxbridge` command. `serve` and `doctor` run the sidecar's own CLI
// from the project's Python environment, so they work before any build step.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const HELP = `usage: jaxbridge <command> [options]

commands:
  serve [--endpoint tcp://127.0.0.1:5555] [--allow NAMESPACE]... [--no-x64]
                    start a sidecar for TypeScript clients to connect() to
  doctor            print what the sidecar's Python and JAX see (JSON)
  setup             install node packages and the Python environment (.venv)

Run \`jaxbridge <command> --help\` for a command's options.
Environment: JAXBRIDGE_VENV (default .venv), JAXBRIDGE_PYTHON_BIN (a Python with jaxbridge-sidecar installed).`;

function python() {
  if (process.env.JAXBRIDGE_PYTHON_BIN) return process.env.JAXBRIDGE_PYTHON_BIN;
  const venv = resolve(root, process.env.JAXBRIDGE_VENV ?? ".venv");
  const bin = join(venv, "bin", "python");
  if (!existsSync(bin)) {
    console.error(`jaxbridge: no Python environment at ${venv}; run \`jaxbridge setup\` (or npm run setup) first`);
    process.exit(2);
  }
  return bin;
}

function run(cmd, args) {
  const child = spawn(cmd, args, { stdio: "inherit", cwd: process.cwd() });
  for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => child.kill(sig));
  child.on("exit", (code, sig) => process.exit(sig ? 1 : (code ?? 1)));
}

const [command, ...rest] = process.argv.slice(2);
switch (command) {
  case "serve":
  case "doctor":
    run(python(), ["-m", "jaxbridge_sidecar", command, ...rest]);
    break;
  case "setup":
    run(process.execPath, [join(root, "scripts", "setup.mjs"), ...rest]);
    break;
  case undefined:
  case "-h":
  case "--help":
  case "help":
    console.log(HELP);
    break;
  default:
    console.error(`jaxbridge: unknown command ${JSON.stringify(command)}\n\n${HELP}`);
    process.exit(2);
}
