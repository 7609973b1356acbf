/**
 * The `jaxbridge` command: repl, serve, doctor, keygen, setup, --version.
 * bin/jaxbridge.mjs loads this file (through tsx in a checkout, compiled
 * from dist/ in an installed package) and calls `main`.
 */
import { Command, Option } from "commander";
import type { ConnectOptions } from "../session/session.js";
import { curveFromArgs, writeKeyPair } from "../wire/keys.js";
import { doctor, formatDoctor, packageVersion } from "./doctor.js";
import { runScript, runSidecarCli } from "./python.js";

const collect = (value: string, previous: string[]): string[] => [...previous, value];

interface RemoteFlags {
  url?: string;
  serverKey?: string;
  clientKey?: string;
}

function remoteOptions(cmd: Command): Command {
  return cmd
    .option("--url <url>", "a sidecar started elsewhere (tcp://host:5555) instead of an embedded one")
    .option("--server-key <key>", "CURVE: the sidecar's public key (Z85, or a certificate file)")
    .option("--client-key <file>", "CURVE: your key pair (the .key_secret certificate file keygen writes)");
}

export function buildProgram(): Command {
  const program = new Command("jaxbridge")
    .description("Drive real JAX from TypeScript: a REPL, a sidecar server, and checks of the installation.")
    .enablePositionalOptions()
    .version(packageVersion(), "-V, --version", "print jaxbridge's version")
    .showHelpAfterError("(run with --help for usage)")
    .addHelpText(
      "after",
      `
Environment:
  JAXBRIDGE_PYTHON_BIN    a Python with jaxbridge-sidecar installed, instead of the environment setup built
  JAXBRIDGE_VENV          a venv to use (and for setup to build) instead of the cached environment (a checkout: .venv)
  JAXBRIDGE_CACHE_DIR     where setup keeps environments (default ~/.cache/jaxbridge, or $XDG_CACHE_HOME/jaxbridge)
  JAXBRIDGE_PYTHON        the CPython setup builds from (default: the newest >= 3.11 found, pyenv's too)
  JAXBRIDGE_INSTALLER     how setup installs: uv, pip or auto (default auto: uv when on PATH)
  JAXBRIDGE_UV            the uv executable setup uses (default: uv on PATH)
  JAXBRIDGE_REPL_HISTORY  the REPL's history file (default ~/.jaxbridge_repl_history; empty: none)
  NO_COLOR                no colours in the REPL`,
    );

  remoteOptions(
    program
      .command("repl")
      .description("a notebook-style TypeScript REPL with the bridge loaded (jb, jnp, lax, nn, random, ...)")
      .option("--allow <namespace>", "embedded sidecar: also allow calls into this Python namespace (repeatable)", collect, [])
      .option("--no-x64", "embedded sidecar: JAX's 32-bit defaults"),
  ).action(async (o: RemoteFlags & { allow: string[]; x64: boolean }) => {
    const { startRepl } = await import("../repl/index.js");
    const curve = curveFromArgs(o);
    const options: ConnectOptions = {
      ...(o.url ? { url: o.url } : {}),
      ...(curve ? { curve } : {}),
      ...(o.allow.length ? { allow: o.allow } : {}),
      ...(o.x64 === false ? { x64: false } : {}),
    };
    const r = await startRepl({ connect: options });
    await r.closed;
    process.exit(0);
  });

  program
    .command("serve")
    .description("start a sidecar for TypeScript clients to connect() to (runs `python -m jaxbridge_sidecar serve`)")
    .option("--endpoint <url>", "ZeroMQ endpoint to bind (tcp://HOST:PORT or ipc://PATH)", "tcp://127.0.0.1:5555")
    .option("--allow <namespace>", "also allow calls into this Python namespace (repeatable; also JAXBRIDGE_ALLOW, comma-separated)", collect, [])
    .option("--no-x64", "run JAX with its 32-bit defaults")
    .option("--curve-secret-key <file>", "CURVE: the sidecar's secret certificate (needed for a non-loopback bind)")
    .option("--authorized-keys <fileOrDir>", "CURVE: client public keys allowed to connect (a file or a folder of certificates)")
    .option("--max-message-bytes <n>", "largest request accepted")
    .argument("[extra...]", "further options, passed to the Python serve as they are")
    .allowUnknownOption()
    .action(async (extra: string[], o: { endpoint: string; allow: string[]; x64: boolean; curveSecretKey?: string; authorizedKeys?: string; maxMessageBytes?: string }) => {
      const args = ["serve", "--endpoint", o.endpoint];
      for (const ns of o.allow) args.push("--allow", ns);
      if (o.x64 === false) args.push("--no-x64");
      if (o.curveSecretKey) args.push("--curve-secret-key", o.curveSecretKey);
      if (o.authorizedKeys) args.push("--authorized-keys", o.authorizedKeys);
      if (o.maxMessageBytes) args.push("--max-message-bytes", o.maxMessageBytes);
      process.exitCode = await runSidecarCli([...args, ...extra]);
    });

  remoteOptions(
    program
      .command("doctor")
      .description("report what is installed and what a sidecar sees: Node, zeromq, Python, JAX, backend, devices, protocol")
      .option("--json", "print the report as JSON")
      .option("--no-x64", "embedded sidecar: JAX's 32-bit defaults"),
  ).action(async (o: RemoteFlags & { json?: boolean; x64: boolean }) => {
    const curve = curveFromArgs(o);
    const report = await doctor({ ...(o.url ? { url: o.url } : {}), ...(curve ? { curve } : {}), ...(o.x64 === false ? { x64: false } : {}) });
    process.stdout.write(o.json ? `${JSON.stringify(report, null, 2)}\n` : formatDoctor(report));
    process.exitCode = report.ok ? 0 : 1;
  });

  program
    .command("keygen")
    .description("make a CURVE key pair for a sidecar or a client: DIR/NAME.key (public) and DIR/NAME.key_secret (the pair, 0600); needs no Python")
    .option("--out <dir>", "folder to write into (created 0700 if missing)", ".")
    .option("--name <name>", "file name stem: e.g. `server` on the sidecar's host, `laptop` on a client", "jaxbridge")
    .option("--force", "replace existing files (whoever holds the old key will be refused)")
    .action((o: { out: string; name: string; force?: boolean }) => {
      const w = writeKeyPair(o.out, o.name, { force: o.force === true });
      process.stdout.write(`wrote ${w.publicFile} (public key: give it to the other side)\nwrote ${w.secretFile} (key pair: keep it here, mode 0600)\npublic key: ${w.publicKey}\n`);
    });

  program
    .command("setup")
    .description("build the sidecar's Python environment (in a project: the per-user cache, shared and kept by npm ci; in a checkout: node_modules and .venv)")
    .addOption(new Option("--force", "rebuild the environment even if it looks complete"))
    .addOption(new Option("--test", "(a checkout) also install the test-only Python packages"))
    .addOption(new Option("--quiet", "print nothing unless something is installed or fails"))
    .addOption(new Option("--verbose", "stream the output of npm, pip or uv"))
    .action(async (o: { force?: boolean; test?: boolean; quiet?: boolean; verbose?: boolean }) => {
      // bin/jaxbridge.mjs runs scripts/setup.mjs itself before this file can load; this is the
      // path of `jaxbridge help setup` and of a program built by buildProgram() elsewhere.
      const args = [...(o.force ? ["--force"] : []), ...(o.test ? ["--test"] : []), ...(o.quiet ? ["--quiet"] : []), ...(o.verbose ? ["--verbose"] : [])];
      process.exitCode = await runScript("setup.mjs", args);
    });

  return program;
}

export async function main(argv: string[] = process.argv): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (e) {
    process.stderr.write(`jaxbridge: ${(e as Error).message ?? String(e)}\n`);
    process.exit(1);
  }
}
