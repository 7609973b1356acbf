// Shared helpers for jaxbridge's setup and test scripts.
// Node built-ins only: these run before node_modules exists.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { venvPython as pythonIn } from "./env-cache.mjs";

/** The repository root: the folder holding package.json, python/ and scripts/. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const IS_WIN = process.platform === "win32";

/** The sidecar's virtual environment: `$JAXBRIDGE_VENV` (relative to the repo root), default `.venv`. */
export function venvDir(env = process.env) {
  return resolve(REPO_ROOT, env.JAXBRIDGE_VENV || ".venv");
}

/** The Python executable inside a virtual environment. */
export function venvPython(dir = venvDir()) {
  return pythonIn(dir);
}

/** A path for messages: relative to the repo root when inside it. */
export function show(path) {
  const r = relative(REPO_ROOT, path);
  return r && !r.startsWith("..") && !r.startsWith(sep) ? r : path;
}

export function sha256(data) {
  return createHash("sha256").update(data).digest("hex");
}

/** sha256 of a file's bytes, or a fixed marker when the file does not exist. */
export function sha256File(path) {
  return existsSync(path) ? sha256(readFileSync(path)) : "absent";
}

export function readText(path) {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null;
  }
}

export function stripAnsi(s) {
  // eslint-disable-next-line no-control-regex
  return s.replace(/\u001b\[[0-9;?]*[ -/]*[@-~]/g, "");
}

export function fmtSeconds(ms) {
  return `${(ms / 1000).toFixed(1)}s`;
}

/** Quote a command line for display. */
export function showCommand(cmd, args) {
  return [cmd, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(" ");
}

const children = new Set();

/**
 * Kill the children we started (by pid) and run `cleanup` when this process is
 * interrupted, then exit with the conventional 128+signal status.
 */
export function onInterrupt(cleanup = () => {}) {
  for (const [sig, num] of [["SIGINT", 2], ["SIGTERM", 15], ["SIGHUP", 1]]) {
    process.on(sig, () => {
      for (const child of children) {
        try {
          child.kill(sig === "SIGINT" ? "SIGINT" : "SIGTERM");
        } catch {
          /* already gone */
        }
      }
      try {
        cleanup();
      } finally {
        process.exit(128 + num);
      }
    });
  }
}

/**
 * Run a command without a shell. Output is kept (the last `keep` bytes) and,
 * with `tee`, streamed to this process's stdout/stderr as it comes; with
 * `logFile`, appended there too. Resolves to {code, signal, output, error}.
 */
export function run(cmd, args, { cwd = REPO_ROOT, env = process.env, tee = false, logFile = null, keep = 256 * 1024 } = {}) {
  return new Promise((resolvePromise) => {
    let output = "";
    const add = (chunk, stream) => {
      const text = chunk.toString();
      output += text;
      if (output.length > keep) output = output.slice(output.length - keep);
      if (tee) stream.write(chunk);
      if (logFile) {
        try {
          appendFileSync(logFile, chunk);
        } catch {
          /* logging is best effort */
        }
      }
    };
    let child;
    try {
      child = spawn(cmd, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"], windowsHide: true });
    } catch (error) {
      resolvePromise({ code: null, signal: null, output: String(error), error });
      return;
    }
    children.add(child);
    child.stdout.on("data", (c) => add(c, process.stdout));
    child.stderr.on("data", (c) => add(c, process.stderr));
    let spawnError = null;
    child.on("error", (error) => {
      spawnError = error;
    });
    child.on("close", (code, signal) => {
      children.delete(child);
      if (spawnError) output += `${output && !output.endsWith("\n") ? "\n" : ""}${spawnError.message}\n`;
      resolvePromise({ code: spawnError ? null : code, signal, output, error: spawnError });
    });
  });
}

/** The last `n` non-empty lines of `text`. */
export function tail(text, n = 40) {
  const lines = stripAnsi(text).replace(/\s+$/, "").split(/\r?\n/);
  return lines.slice(-n).join("\n");
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}
