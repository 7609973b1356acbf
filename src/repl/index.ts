/**
 * The notebook-style REPL: Node's REPL with TypeScript input, top-level
 * await, and the bridge preloaded (see src/repl/README.md for the choices).
 *
 * Evaluation: input → `toJavaScript` (esbuild type-strip and top-level
 * rewrites) → Node's own evaluator (which adds top-level await) → display.
 * Every request the session sends while a line evaluates carries that
 * line's AbortSignal (an AsyncLocalStorage follows the line's async work),
 * so Ctrl-C abandons the pending call: its reply, when it comes, is freed,
 * and the REPL and the sidecar carry on.
 */
import repl, { type REPLServer } from "node:repl";
import { AsyncLocalStorage } from "node:async_hooks";
import { homedir } from "node:os";
import { join } from "node:path";
import * as api from "../index.js";
import { connect, type ConnectOptions, Session } from "../session/session.js";
import type { CurveClientKeys } from "../wire/transport.js";
import { curveFromArgs } from "../wire/keys.js";
import { loadTransformer, toJavaScript } from "./transform.js";
import { colorEnabled, formatError, installDeviceArrayDisplay, installSessionDisplay, makeWriter, paint, rememberFetched, toAutoFetch, collectDeviceArrays, trimStack } from "./display.js";
import { Spinner } from "./spinner.js";
import { RemoteNames, completeRemote, pythonNamespace } from "./complete.js";
import { type Chart, plot, type PlotOptions } from "./plot.js";

export { loadTransformer, toJavaScript } from "./transform.js";
export { drawChart, plot, toSeries, Chart, type PlotOptions } from "./plot.js";

export interface ReplOptions {
  /** How to reach a sidecar (default: an embedded one). */
  connect?: ConnectOptions;
  input?: NodeJS.ReadableStream;
  output?: NodeJS.WritableStream;
  /** History file; null keeps none. Default: `JAXBRIDGE_REPL_HISTORY` (empty: none), else `~/.jaxbridge_repl_history`. */
  historyFile?: string | null;
  /** Colour (default: a colour terminal without NO_COLOR). */
  color?: boolean;
  prompt?: string;
  /** Print the greeting (default true). */
  banner?: boolean;
}

/** One evaluated line: its abort controller and the requests it has in flight. */
interface Run {
  controller: AbortController;
  pending: number;
  interrupted: boolean;
  abandoned: number;
  /** Said once per line: its requests wait behind a call an earlier line abandoned. */
  toldQueued: boolean;
}

const currentRun = new AsyncLocalStorage<Run>();

/**
 * While the REPL runs, every session's requests made while a line evaluates
 * carry that line's signal (frees excepted), so Ctrl-C abandons them: also
 * those of sessions the user connects in the REPL. Returns the undo.
 */
function installInterrupts(tell: (line: string) => void): () => void {
  return Session.addRequestHook((_op, session) => {
    const run = currentRun.getStore();
    if (!run) return undefined;
    if (!run.toldQueued) {
      const busy = session.abandonedCalls;
      if (busy.length > 0) {
        run.toldQueued = true;
        tell(
          busy.length === 1
            ? `queued behind the interrupted ${busy[0]!.what}, which the sidecar has been running for ${seconds(busy[0]!.sentAt)}; .restart stops it`
            : `queued behind ${busy.length} interrupted calls the sidecar is still busy with, the first sent ${seconds(busy[0]!.sentAt)} ago; .restart stops them`,
        );
      }
    }
    run.pending++;
    return { signal: run.controller.signal, settled: () => void run.pending-- };
  });
}

/** `12.3 s` since `since` (Date.now() time). */
function seconds(since: number): string {
  return `${((Date.now() - since) / 1000).toFixed(1)} s`;
}

export function defaultHistoryFile(): string | null {
  const env = process.env.JAXBRIDGE_REPL_HISTORY;
  if (env !== undefined) return env.trim() === "" ? null : env;
  return join(homedir(), ".jaxbridge_repl_history");
}

/** Start the REPL; resolves once it is ready for input. `closed` resolves when the user leaves it. */
export async function startRepl(opts: ReplOptions = {}): Promise<JaxRepl> {
  const r = new JaxRepl(opts);
  await r.start();
  return r;
}

type EvalCallback = (err: Error | null, result?: unknown) => void;
type DefaultEval = (this: REPLServer, code: string, context: object, file: string, cb: EvalCallback) => void;

export class JaxRepl {
  server!: REPLServer;
  private _session: Session | undefined;
  private connectOptions: ConnectOptions;
  private readonly output: NodeJS.WritableStream;
  private readonly color: boolean;
  private readonly spinner: Spinner;
  private readonly names = new RemoteNames(() => this._session);
  private defaultEval!: DefaultEval;
  private running: Run | undefined;
  private lastRun: Run | undefined;
  private queue: Promise<void> = Promise.resolve();
  private settleLine: (() => void) | undefined;
  private undoPatches: () => void = () => {};
  private resolveClosed!: () => void;
  /** Resolves when the REPL has exited and its session is closed. */
  readonly closed = new Promise<void>((resolve) => (this.resolveClosed = resolve));

  constructor(private readonly opts: ReplOptions) {
    this.connectOptions = { ...(opts.connect ?? {}) };
    this.output = opts.output ?? process.stdout;
    this.color = opts.color ?? colorEnabled(this.output);
    this.spinner = new Spinner(process.stderr);
  }

  /** The session the REPL's `jb` names. */
  get session(): Session {
    if (!this._session) throw new api.JaxBridgeError("no session: use .restart or .connect URL");
    return this._session;
  }

  async start(): Promise<void> {
    // Before the sidecar starts: without esbuild there is nothing to evaluate with.
    await loadTransformer();
    await this.openSession();
    const restore = [installDeviceArrayDisplay(), installSessionDisplay(), installInterrupts((line) => this.tell(line))];
    this.undoPatches = () => restore.forEach((fn) => fn());
    if (this.opts.banner !== false) {
      const loaded = ["jb", "jnp", "lax", "nn", "random", "array", "kw", "jit", "filterCond", "filterScan", "unstackPytree", "polyakAverage"];
      this.output.write(`${this.describeSession()}\n`);
      this.output.write(paint(this.color).dim(`${[...loaded, "py", "show", "plot"].join(", ")} are loaded; TypeScript and top-level await work; .help for more\n`));
    }
    const terminal = (this.output as NodeJS.WriteStream).isTTY === true;
    const server = repl.start({
      prompt: this.opts.prompt ?? "jb> ",
      input: this.opts.input ?? process.stdin,
      output: this.output,
      terminal,
      useColors: this.color,
      useGlobal: true,
      ignoreUndefined: true,
      breakEvalOnSigint: true,
      preview: false,
      writer: makeWriter(this.color),
    });
    this.server = server;
    this.defaultEval = server.eval as unknown as DefaultEval;
    (server as { eval: unknown }).eval = (code: string, _context: object, file: string, cb: EvalCallback) => this.evalLine(code, file, cb);
    this.installErrorHandler();
    this.installCompleter();
    this.defineCommands();
    this.installGlobals();
    // Ctrl-C while a line awaits: Node's REPL stops waiting (breakEvalOnSigint); we abandon the line's calls.
    server.on("SIGINT", () => this.interrupt());
    server.on("exit", () => void this.shutdown());
    const history = this.opts.historyFile === undefined ? defaultHistoryFile() : this.opts.historyFile;
    if (history) {
      await new Promise<void>((resolve) =>
        server.setupHistory(history, (err) => {
          if (err) this.output.write(paint(this.color).yellow(`history is off: ${err.message}\n`));
          resolve();
        }),
      );
    }
  }

  // --- sessions ----------------------------------------------------------------------

  private async openSession(): Promise<void> {
    const label = this.connectOptions.url ? `connecting to ${this.connectOptions.url}` : "starting the sidecar";
    this.spinner.start(label);
    try {
      this._session = await connect({ handshakeTimeoutMs: 20_000, ...this.connectOptions });
    } finally {
      this.spinner.stop();
    }
    if (this.server) this.setGlobal("jb", this._session);
  }

  describeSession(): string {
    const s = this._session;
    if (!s || s.closed) return "no session: .restart or .connect URL";
    const i = s.info;
    const where = s.sidecar ? `embedded sidecar pid ${i.pid}` : `sidecar at ${s.url} (pid ${i.pid})`;
    const devices = i.devices.map((d) => d.str).join(", ");
    return `jaxbridge: JAX ${i.jax} on ${i.backend} (${devices}), Python ${i.python}, ${where}${i.x64 ? "" : ", x64 off"}`;
  }

  /** Close the current session and open a new one (a new embedded sidecar, or the same URL again). */
  async restart(options?: ConnectOptions): Promise<void> {
    if (options) this.connectOptions = options;
    const old = this._session;
    this._session = undefined;
    await old?.close().catch(() => {});
    await this.openSession();
  }

  private async shutdown(): Promise<void> {
    await this.queue;
    this.spinner.stop();
    await this._session?.close().catch(() => {});
    this.undoPatches();
    this.resolveClosed();
  }

  // --- evaluation ----------------------------------------------------------------------

  /**
   * Lines run one at a time: on a terminal Node's REPL holds keys while a
   * line awaits, but piped input would otherwise start the next line at once.
   */
  private evalLine(code: string, file: string, cb: EvalCallback): void {
    this.queue = this.queue.then(
      () =>
        new Promise<void>((settle) => {
          this.settleLine = settle;
          this.evaluate(code, file, (value, run) => this.fetchForDisplay(value, run), (err, value, run) => {
            this.settleLine = undefined;
            settle();
            if (err) cb(err); // Node's REPL hands it to its domain: see installErrorHandler
            else if (run) cb(null, value);
            else cb(null); // nothing to run (a type declaration): print nothing
          });
        }),
    );
  }

  /**
   * Strip types, evaluate with Node's evaluator inside a Run, then `post` the
   * value (still inside the Run: the spinner shows and Ctrl-C aborts).
   */
  private evaluate(code: string, file: string, post: (value: unknown, run: Run) => Promise<unknown>, done: (err: Error | null, value: unknown, run: Run | undefined) => void): void {
    let js: string;
    try {
      js = toJavaScript(code);
    } catch (e) {
      done(e as Error, undefined, undefined);
      return;
    }
    if (js.trim() === "") {
      done(null, undefined, undefined);
      return;
    }
    const run: Run = { controller: new AbortController(), pending: 0, interrupted: false, abandoned: 0, toldQueued: false };
    this.running = this.lastRun = run;
    this.spinner.start(`running (Ctrl-C interrupts)`);
    const finish = (err: Error | null, value?: unknown): void => {
      void (async () => {
        let out = value;
        if (err === null && !run.interrupted) {
          try {
            out = await post(value, run);
          } catch (e) {
            err = e as Error;
          }
        }
        this.endRun(run);
        done(err, out, run);
      })();
    };
    currentRun.run(run, () => this.defaultEval.call(this.server, js, this.server.context, file, finish));
  }

  private async fetchForDisplay(value: unknown, run: Run): Promise<unknown> {
    const s = this._session;
    if (!s || s.closed) return value;
    // Eager results may still be on their way: wait for them (whatever their size), so that a
    // failure is the line's error rather than an array printed without values.
    await Promise.all(collectDeviceArrays(value).map((a) => a.block()));
    const arrays = toAutoFetch(value, s);
    if (arrays.length === 0) return value;
    try {
      const hosts = await s.get(arrays, { signal: run.controller.signal, timeoutMs: 60_000 });
      arrays.forEach((a, k) => rememberFetched(a, hosts[k] as api.NDArray));
    } catch {
      // printing without values is fine
    }
    return value;
  }

  /** A line of its own in the output while a line evaluates (dim); the spinner then says the line is queued. */
  private tell(line: string): void {
    this.spinner.stop();
    this.output.write(`${paint(this.color).dim(`(${line})`)}\n`);
    this.spinner.start("queued behind the interrupted call (Ctrl-C interrupts)");
  }

  private interrupt(): void {
    const run = this.running;
    if (!run || run.interrupted) return;
    run.interrupted = true;
    run.abandoned = run.pending;
    run.controller.abort(new api.AbortedError("interrupted with Ctrl-C"));
  }

  private endRun(run: Run): void {
    this.spinner.stop();
    if (this.running === run) this.running = undefined;
  }

  /**
   * Every evaluation error reaches the REPL's domain (errors of awaited code
   * go there directly, without the eval callback). Bridge errors and
   * interrupts are printed here; the rest go to Node's own handler.
   */
  private installErrorHandler(): void {
    const domain = (this.server as unknown as { _domain: NodeJS.EventEmitter })._domain;
    const node = domain.listeners("error") as ((e: unknown) => void)[];
    domain.removeAllListeners("error");
    domain.on("error", (e: unknown) => {
      if (this.running) this.endRun(this.running);
      // An awaited line that failed never calls back: let the next line run.
      const settle = this.settleLine;
      this.settleLine = undefined;
      settle?.();
      const text = this.describeError(e);
      if (text === null) {
        trimStack(e);
        for (const fn of node) fn.call(domain, e);
        return;
      }
      (this.server as unknown as { lastError: unknown }).lastError = e;
      this.output.write(`${text}\n`);
      this.server.clearBufferedCommand();
      this.server.displayPrompt();
    });
  }

  private describeError(e: unknown): string | null {
    const run = this.lastRun;
    const code = (e as { code?: unknown } | null)?.code;
    if (code === "ERR_SCRIPT_EXECUTION_INTERRUPTED" || (run?.interrupted && e instanceof api.AbortedError)) {
      const n = run?.interrupted ? run.abandoned : 0;
      const what = n === 0 ? "" : `: abandoned ${n} pending call${n === 1 ? "" : "s"} (results are freed when they arrive)`;
      // The sidecar is not interrupted: say what it is still busy with, and the way out.
      const busy = this._session?.abandonedCalls ?? [];
      const still =
        busy.length === 0
          ? n === 0
            ? ""
            : "; the sidecar carries on"
          : busy.length === 1
            ? `; the sidecar is still running the ${busy[0]!.what} (for ${seconds(busy[0]!.sentAt)} so far), and later calls wait behind it; .restart stops it`
            : `; the sidecar is still busy with ${busy.length} of them (the first sent ${seconds(busy[0]!.sentAt)} ago), and later calls wait behind them; .restart stops them`;
      return paint(this.color).yellow(`Interrupted${what}${still}`);
    }
    return formatError(e, this.color);
  }

  // --- globals, completion, commands ---------------------------------------------------------

  private setGlobal(name: string, value: unknown): void {
    Object.defineProperty(globalThis, name, { value, writable: true, configurable: true, enumerable: false });
  }

  private installGlobals(): void {
    // The public API, name by name (src/index.ts); `jaxbridge` is all of it.
    for (const [name, value] of Object.entries(api)) this.setGlobal(name, value);
    this.setGlobal("jaxbridge", api);
    this.setGlobal("jb", this._session);
    this.setGlobal("py", pythonNamespace((fn, args) => this.session.call(fn, ...args)));
    this.setGlobal("show", (value: unknown) => this.show(value));
    this.setGlobal("plot", (value: unknown, opts: PlotOptions = {}) => this.plot(value, opts));
  }

  /** `await show(x)`: fetch every DeviceArray in x (any size) so that x prints with its values. */
  private async show<T>(value: T): Promise<T> {
    const arrays = [...new Set(collectDeviceArrays(value))];
    const bySession = new Map<unknown, api.DeviceArray[]>();
    for (const a of arrays) bySession.set(a.owner, [...(bySession.get(a.owner) ?? []), a]);
    for (const [owner, list] of bySession) {
      const hosts = await (owner as Session).get(list);
      list.forEach((a, k) => rememberFetched(a, hosts[k] as api.NDArray));
    }
    return value;
  }

  private plot(value: unknown, opts: PlotOptions = {}): Promise<Chart> {
    return plot(value, { color: this.color, ...opts, signal: currentRun.getStore()?.controller.signal });
  }

  private installCompleter(): void {
    const server = this.server as unknown as { completer: (line: string, cb: (err: Error | null, r?: [string[], string]) => void) => void };
    const fallback = server.completer.bind(this.server);
    server.completer = (line, cb) => {
      completeRemote(line, this.names, (name) => (globalThis as Record<string, unknown>)[name]).then(
        (r) => (r ? cb(null, r) : fallback(line, cb)),
        () => fallback(line, cb),
      );
    };
  }

  private defineCommands(): void {
    const server = this.server;
    const p = paint(this.color);
    const busy = (work: () => Promise<void>): void => {
      void work()
        .catch((e: unknown) => this.output.write(`${formatError(e, this.color) ?? p.red(String((e as Error)?.message ?? e))}\n`))
        .finally(() => server.displayPrompt());
    };
    server.defineCommand("devices", {
      help: "List the sidecar's devices (backend, JAX, where it runs)",
      action: () => {
        this.output.write(`${this.describeSession()}\n`);
        const s = this._session;
        if (s && !s.closed) for (const d of s.info.devices) this.output.write(`  ${String(d.id).padStart(2)}  ${d.str.padEnd(12)} ${d.platform} (${d.kind})\n`);
        server.displayPrompt();
      },
    });
    server.defineCommand("restart", {
      help: "Close the session and start a new sidecar (or reconnect to the same URL)",
      action: () =>
        busy(async () => {
          await this.restart();
          this.output.write(`${this.describeSession()}\n`);
        }),
    });
    server.defineCommand("connect", {
      help: "Connect to a sidecar: .connect tcp://host:5555 [--server-key KEY --client-key FILE]; no URL: a new embedded sidecar",
      action: (arg: string) =>
        busy(async () => {
          const { url, curve } = parseConnectArgs(arg);
          const { url: _url, curve: _curve, ...rest } = this.connectOptions;
          await this.restart(url ? { ...rest, url, ...(curve ? { curve } : {}) } : rest);
          this.output.write(`${this.describeSession()}\n`);
        }),
    });
    server.defineCommand("plot", {
      help: "Line plot of a 1-d array: .plot EXPR (EXPR may use await; DeviceArrays are fetched)",
      action: (expr: string) => {
        if (!expr.trim()) {
          this.output.write("usage: .plot EXPR, e.g. .plot losses or .plot await jb.call(\"jax.numpy.sin\", xs)\n");
          return server.displayPrompt();
        }
        this.evaluate(
          expr,
          "REPL",
          (value) => this.plot(value),
          (err, chart) => {
            if (err) {
              (server as unknown as { _domain: NodeJS.EventEmitter })._domain.emit("error", err);
              return;
            }
            if (chart !== undefined) this.output.write(`${String(chart)}\n`);
            server.displayPrompt();
          },
        );
      },
    });
    server.defineCommand("help", {
      help: "Show this help",
      action: () => {
        this.output.write(HELP);
        const names = Object.keys(server.commands).sort();
        const width = Math.max(...names.map((n) => n.length)) + 2;
        for (const name of names) this.output.write(`  .${name.padEnd(width)}${server.commands[name]?.help ?? ""}\n`);
        server.displayPrompt();
      },
    });
  }
}

/** `.connect URL [--server-key KEY] [--client-key FILE]` */
export function parseConnectArgs(arg: string): { url?: string; curve?: CurveClientKeys } {
  const words = arg.trim().split(/\s+/).filter(Boolean);
  const flags: { serverKey?: string; clientKey?: string } = {};
  let url: string | undefined;
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    if (w === "--server-key" || w === "--client-key") {
      const v = words[++i];
      if (v === undefined) throw new api.BridgeInputError(`${w} needs a value`);
      if (w === "--server-key") flags.serverKey = v;
      else flags.clientKey = v;
    } else if (url === undefined && !w.startsWith("--")) url = w;
    else throw new api.BridgeInputError(`.connect: unexpected ${JSON.stringify(w)}; usage: .connect URL [--server-key KEY --client-key FILE]`);
  }
  const curve = curveFromArgs(flags);
  return { ...(url ? { url } : {}), ...(curve ? { curve } : {}) };
}

const HELP = `jaxbridge REPL: TypeScript in, JAX in the sidecar.

  Input is TypeScript (types are stripped, not checked) with top-level await.
  const/let/class may be declared again; import {x} from "m" becomes a dynamic import.

  jb                    the session: await jb.call("jax.numpy.sum", x, kw({ axis: 0 }))
  py                    the same calls by name: await py.jax.numpy.sum(x, kw({ axis: 0 }))
  jnp lax nn random     jnp.sin(x), x.add(1), x.sum(): run at once on device arrays (await x.toHost() reads);
                        inside jit(fn), filterScan, filterCond they build programs
  pyCall(m, x)          a remote (equinox) module's __call__, inside those too: m = await py.equinox.nn.MLP(...)
                        (equinox.nn is not allowed by default: start with jaxbridge repl --allow equinox.nn)
  array(...)            a host array (NDArray); prints like numpy
  await show(x)         fetch x's DeviceArrays (any size) and print them with their values
  await plot(x)         a line plot of a 1-d array (or [n, k]: k series)
  _  _error             the last result and the last error (_error.remoteTraceback: all of it)

  DeviceArray results print their dtype, shape and device, with their values when the
  result's arrays total at most 1 MiB. A call that takes a while shows a spinner; Ctrl-C
  abandons it (its results are freed) and keeps the REPL; the sidecar finishes what it is
  running, and later calls wait behind it (.restart stops it).
  await jb.tidy(async () => ...) and \`using s = jb.scope()\` free the arrays made inside;
  await jb.memory() shows what the sidecar holds.
  Tab completes JavaScript names, and Python names in jb.call("jax.numpy.<Tab> and py.jax.<Tab>.
  History: ~/.jaxbridge_repl_history (JAXBRIDGE_REPL_HISTORY to move it, empty for none).

Commands:
`;
