/**
 * Helpers for suites that reach a sidecar over TCP with CURVE: key sets made
 * by both keygens, and a sidecar process started with `serve`.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { type KeyPair, loadCurveKeys, loadKeyPair, writeKeyPair } from "../../src/wire/keys.js";
import { PACKAGE_ROOT, sidecarPython } from "../../src/wire/python-env.js";
import type { CurveClientKeys } from "../../src/wire/transport.js";

const execFileP = promisify(execFile);

export interface KeySet {
  dir: string;
  /** server.key / server.key_secret, made by the sidecar's keygen. */
  serverPublic: string;
  serverSecret: string;
  /** The folder of authorized client public keys (clients/laptop.key, written by src/wire/keys.ts). */
  authorized: string;
  client: CurveClientKeys;
  /** A pair no sidecar knows. */
  stranger: KeyPair;
  cleanup(): void;
}

/** Keys for a sidecar and one client, in a fresh temp folder: the server's pair from `python -m jaxbridge_sidecar keygen`, the client's from src/wire/keys.ts, so each side reads the other's files. */
export async function makeKeys(): Promise<KeySet> {
  const dir = mkdtempSync(join(tmpdir(), "jaxbridge-keys-"));
  await execFileP(sidecarPython(), ["-m", "jaxbridge_sidecar", "keygen", "--out", dir, "--name", "server"], { cwd: PACKAGE_ROOT });
  const authorized = join(dir, "clients");
  mkdirSync(authorized, { mode: 0o700 });
  const laptop = writeKeyPair(join(dir, "laptop"), "laptop");
  // Only the public half goes to the sidecar, as a user would copy it.
  copyFileSync(laptop.publicFile, join(authorized, "laptop.key"));
  const stranger = writeKeyPair(join(dir, "stranger"), "stranger");
  return {
    dir,
    serverPublic: join(dir, "server.key"),
    serverSecret: join(dir, "server.key_secret"),
    authorized,
    client: loadCurveKeys({ server: join(dir, "server.key"), client: laptop.secretFile }),
    stranger: loadKeyPair(stranger.secretFile),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export interface SidecarProcess {
  proc: ChildProcess;
  /** The endpoint it bound (from its READY line). */
  url: string;
  stderr(): string;
  stop(): Promise<void>;
}

/** Start `python -m jaxbridge_sidecar serve ARGS` and wait for its READY line. */
export async function startSidecar(args: string[], timeoutMs = 120_000): Promise<SidecarProcess> {
  const proc = spawn(sidecarPython(), ["-m", "jaxbridge_sidecar", "serve", ...args], { cwd: PACKAGE_ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, PYTHONUNBUFFERED: "1" } });
  let err = "";
  proc.stderr!.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-8000)));
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`sidecar not ready after ${timeoutMs} ms:\n${err}`)), timeoutMs);
    proc.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /JAXBRIDGE READY (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    proc.once("exit", (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`sidecar exited (${sig ?? code}) before it was ready:\n${err}`));
    });
  });
  return {
    proc,
    url,
    stderr: () => err,
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
        proc.once("exit", () => resolve());
        proc.kill("SIGTERM");
        setTimeout(() => proc.kill("SIGKILL"), 5000).unref();
      }),
  };
}

/** Run `serve ARGS` expecting it to refuse: resolves with its exit code, output and how long it took. */
export async function serveExpectingRefusal(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const t0 = Date.now();
  try {
    const r = await execFileP(sidecarPython(), ["-m", "jaxbridge_sidecar", "serve", ...args], { cwd: PACKAGE_ROOT, timeout: 60_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - t0 };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof x.code === "number" ? x.code : null, stdout: x.stdout ?? "", stderr: x.stderr ?? "", ms: Date.now() - t0 };
  }
}
