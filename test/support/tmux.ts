/**
 * Drive a program in a real terminal: a tmux session on a private socket
 * (`tmux -L`), keys sent with send-keys, the screen read with capture-pane,
 * and waits that poll the screen instead of sleeping.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { rmSync } from "node:fs";

let counter = 0;

export interface TmuxOptions {
  env?: Record<string, string>;
  /** Environment variables to remove (NO_COLOR, say). */
  unset?: string[];
  cwd?: string;
  width?: number;
  height?: number;
}

export class Tmux {
  readonly socket: string;
  private socketPath = "";
  private closed = false;

  private constructor(socket: string) {
    this.socket = socket;
  }

  /** Start `command` (argv) in a new detached tmux session on its own server. */
  static start(command: string[], opts: TmuxOptions = {}): Tmux {
    const socket = `jaxbridge-test-${process.pid}-${++counter}`;
    const t = new Tmux(socket);
    const env = [...(opts.unset ?? []).flatMap((k) => ["-u", k]), ...Object.entries(opts.env ?? {}).map(([k, v]) => `${k}=${shellQuote(v)}`)];
    // Keep the pane after the program exits, so its last words can be read.
    const shell = `${env.length ? `env ${env.join(" ")} ` : ""}${command.map(shellQuote).join(" ")}; echo "[exited $?]"; sleep 600`;
    t.tmux(["-f", "/dev/null", "start-server", ";", "set-option", "-g", "history-limit", "50000", ";", "new-session", "-d", "-s", "main", "-x", String(opts.width ?? 200), "-y", String(opts.height ?? 50), ...(opts.cwd ? ["-c", opts.cwd] : []), shell]);
    t.socketPath = t.tmux(["display-message", "-p", "#{socket_path}"]).trim();
    return t;
  }

  private tmux(args: string[]): string {
    return execFileSync("tmux", ["-L", this.socket, ...args], { encoding: "utf8" });
  }

  /** Type text literally (no key names), without pressing Enter. */
  type(text: string): void {
    this.tmux(["send-keys", "-t", "main", "-l", text]);
  }

  /** Press keys by tmux name: "Enter", "Tab", "C-c", "Up", "C-u". */
  press(...keys: string[]): void {
    this.tmux(["send-keys", "-t", "main", ...keys]);
  }

  /** Type a line and press Enter. */
  line(text: string): void {
    this.type(text);
    this.press("Enter");
  }

  /** The whole pane with its scrollback; `escapes` keeps colour codes. */
  capture(escapes = false): string {
    return this.tmux(["capture-pane", "-p", "-J", "-t", "main", "-S", "-", ...(escapes ? ["-e"] : [])]).replace(/\s+$/, "");
  }

  /** Lines of the capture so far: pass to `waitFor` to look only at what comes after. */
  mark(): number {
    return this.capture().split("\n").length;
  }

  /**
   * Wait until the screen (from line `since` on) matches; returns that text.
   * Fails with the screen in the message.
   */
  async waitFor(pattern: RegExp | string, opts: { timeoutMs?: number; since?: number; escapes?: boolean } = {}): Promise<string> {
    const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
    let text = "";
    for (;;) {
      text = this.capture(opts.escapes).split("\n").slice(opts.since ?? 0).join("\n");
      if (typeof pattern === "string" ? text.includes(pattern) : pattern.test(text)) return text;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${String(pattern)} on the screen:\n${text}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Type a line and wait for the next prompt (`jb>` by default); returns what was printed in between. */
  async run(text: string, opts: { prompt?: string; timeoutMs?: number } = {}): Promise<string> {
    const since = this.mark() - 1;
    this.line(text);
    const re = new RegExp(`${escapeRegExp(text)}\\n([\\s\\S]*?)\\n?${escapeRegExp(opts.prompt ?? "jb>")}$`);
    const screen = await this.waitFor(re, { since, ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}) });
    return re.exec(screen)![1]!;
  }

  kill(): void {
    if (this.closed) return;
    this.closed = true;
    spawnSync("tmux", ["-L", this.socket, "kill-server"]);
    if (this.socketPath) rmSync(this.socketPath, { force: true });
  }
}

function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
