import { spawn } from "node:child_process";
import { sidecarPython } from "../../src/wire/python-env.js";

/**
 * Run a Python snippet in the sidecar's environment as an independent oracle.
 * `input` is passed as JSON on stdin (read it with `json.load(sys.stdin)`);
 * whatever the snippet prints as JSON on its last stdout line is returned.
 */
export async function runPython<T = unknown>(code: string, input?: unknown, opts: { env?: Record<string, string> } = {}): Promise<T> {
  const py = sidecarPython();
  return new Promise<T>((resolvePromise, reject) => {
    const child = spawn(py, ["-c", code], { env: { ...process.env, ...opts.env }, stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) return reject(new Error(`python exited ${code}:\n${err}`));
      const last = out.trim().split("\n").pop() ?? "";
      try {
        resolvePromise(JSON.parse(last) as T);
      } catch {
        reject(new Error(`python printed no JSON on its last line:\n${out}\n${err}`));
      }
    });
    child.stdin.end(input === undefined ? "" : JSON.stringify(input));
  });
}
