/**
 * The embedded sidecar: a child Python process listening on an ipc:// socket
 * in a private 0700 folder. It dies with us: we kill it on close and on
 * process exit, and it watches its parent pid (and PR_SET_PDEATHSIG on Linux)
 * in case we are SIGKILLed.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sidecarPython, PACKAGE_ROOT } from "./python-env.js";
import { SidecarDiedError } from "../values/errors.js";

export interface SpawnOptions {
  /** Python interpreter with jaxbridge-sidecar installed (default: the project's .venv). */
  python?: string;
  /** Extra namespaces the sidecar may call into (`serve --allow`). */
  allow?: string[];
  /** Run JAX with 64-bit types enabled (default true). */
  x64?: boolean;
  /**
   * Give the CPU backend this many devices (`serve --num-cpu-devices`,
   * JAX's `jax_num_cpu_devices`, what `--xla_force_host_platform_device_count`
   * does): meshes, shardings and collectives on one machine, for tests and
   * notebooks. CPU only; an accelerator's devices are its own.
   */
  numCpuDevices?: number;
  /** Extra environment for the sidecar (e.g. XLA_FLAGS). */
  env?: Record<string, string>;
  /** Extra command-line arguments for `serve`. */
  args?: string[];
  /** How long to wait for the sidecar to say it is ready (ms, default 120000). */
  startTimeoutMs?: number;
}

export class EmbeddedSidecar {
  readonly url: string;
  readonly child: ChildProcess;
  private readonly dir: string;
  private stderrTail = "";
  private exited = false;
  private stopping: Promise<void> | undefined;
  private readonly onExitHook = (): void => this.kill();
  /** Resolves when the child exits, with a description of how. */
  readonly exitDescription: Promise<string>;

  private constructor(dir: string, url: string, child: ChildProcess) {
    this.dir = dir;
    this.url = url;
    this.child = child;
    child.stderr?.on("data", (d: Buffer) => {
      this.stderrTail = (this.stderrTail + d.toString()).slice(-8000);
      if (process.env.JAXBRIDGE_SIDECAR_STDERR) process.stderr.write(d);
    });
    this.exitDescription = new Promise((resolve) => {
      child.once("exit", (code, sig) => {
        this.exited = true;
        process.off("exit", this.onExitHook);
        this.cleanupDir();
        resolve(sig ? `was killed by ${sig}` : `exited with code ${code}`);
      });
    });
    process.once("exit", this.onExitHook);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get stderr(): string {
    return this.stderrTail;
  }

  static async start(opts: SpawnOptions = {}): Promise<EmbeddedSidecar> {
    const python = opts.python ?? sidecarPython();
    const dir = mkdtempSync(join(tmpdir(), "jaxbridge-"));
    // mkdtemp creates the folder 0700, so only this user can reach the socket.
    const url = `ipc://${join(dir, "sidecar.sock")}`;
    // --parent-pid: we are its supervisor (it dies with us); --remove-on-exit: it
    // removes this folder when it exits, also when we were SIGKILLed and cannot.
    const args = ["-m", "jaxbridge_sidecar", "serve", "--endpoint", url, "--parent-pid", String(process.pid), "--remove-on-exit", dir];
    for (const ns of opts.allow ?? []) args.push("--allow", ns);
    if (opts.x64 === false) args.push("--no-x64");
    if (opts.numCpuDevices !== undefined) {
      if (!Number.isSafeInteger(opts.numCpuDevices) || opts.numCpuDevices < 1) throw new RangeError(`numCpuDevices must be a positive integer, got ${opts.numCpuDevices}`);
      args.push("--num-cpu-devices", String(opts.numCpuDevices));
    }
    args.push(...(opts.args ?? []));
    const child = spawn(python, args, {
      cwd: PACKAGE_ROOT,
      env: { ...process.env, PYTHONUNBUFFERED: "1", ...opts.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const sidecar = new EmbeddedSidecar(dir, url, child);
    child.unref();
    (child.stdout as unknown as { unref?: () => void })?.unref?.();
    (child.stderr as unknown as { unref?: () => void })?.unref?.();
    await sidecar.waitReady(opts.startTimeoutMs ?? 120_000);
    return sidecar;
  }

  private waitReady(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      let out = "";
      const timer = setTimeout(() => {
        this.kill();
        reject(new SidecarDiedError(`the sidecar did not become ready within ${timeoutMs} ms\n${this.stderrTail}`, this.url));
      }, timeoutMs);
      const onData = (d: Buffer): void => {
        out += d.toString();
        if (out.includes("JAXBRIDGE READY")) {
          clearTimeout(timer);
          this.child.stdout?.off("data", onData);
          this.child.stdout?.resume();
          resolve();
        }
      };
      this.child.stdout?.on("data", onData);
      this.child.once("error", (err) => {
        clearTimeout(timer);
        reject(new SidecarDiedError(`could not start the sidecar: ${err.message}`, this.url));
      });
      void this.exitDescription.then((how) => {
        clearTimeout(timer);
        reject(new SidecarDiedError(`the sidecar ${how} before it was ready:\n${this.stderrTail.trim()}`, this.url));
      });
    });
  }

  /**
   * Stop the sidecar: SIGTERM, then SIGKILL after `graceMs`. Always settles,
   * and never rejects: at the latest `graceMs + 3000` ms from now, even if
   * the exit is never reported (the process exit hook still SIGKILLs it).
   * Calling it again returns the same promise.
   */
  stop(graceMs = 2000): Promise<void> {
    this.stopping ??= this.stopOnce(graceMs);
    return this.stopping;
  }

  private async stopOnce(graceMs: number): Promise<void> {
    if (this.exited) return;
    // The child and its pipes are unref'd so that an idle session does not
    // keep Node alive; while we wait for the exit we cause, the loop must
    // stay up, or Node ends the program (exit code 13, an unsettled await)
    // as soon as the SIGKILL timer has fired.
    this.child.ref();
    let killTimer: NodeJS.Timeout | undefined;
    let boundTimer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => {
      killTimer = setTimeout(() => this.kill(), graceMs);
      boundTimer = setTimeout(resolve, graceMs + 3000);
    });
    try {
      this.child.kill("SIGTERM");
    } catch {
      // already gone: the exit event settles the race
    }
    await Promise.race([this.exitDescription, bound]);
    clearTimeout(killTimer);
    clearTimeout(boundTimer);
    if (!this.exited) {
      this.child.unref();
      this.cleanupDir();
    }
  }

  kill(): void {
    if (!this.exited) {
      try {
        this.child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }
    this.cleanupDir();
  }

  private cleanupDir(): void {
    try {
      rmSync(this.dir, { recursive: true, force: true });
    } catch {
      // best effort: the folder is private and in tmp
    }
  }
}
