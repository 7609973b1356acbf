/**
 * Tab completion of Python names, asked of the sidecar with its `list_attrs`
 * op (names a `call` could reach one level below a dotted path), and `py`, a
 * namespace proxy that turns `py.jax.numpy.sum(x)` into
 * `jb.call("jax.numpy.sum", x)`.
 *
 * Completed places:
 * - an unclosed string that holds a dotted name: `jb.call("jax.numpy.li<Tab>`
 * - a `py.` chain: `py.jax.nn.re<Tab>`, and the same on a module proxy from
 *   `jb.import("mypkg")` (anything callable with a string `$path`)
 *
 * A sidecar without `list_attrs` (an older one) answers `UnknownOp`: remote
 * completion is then off for that session and JavaScript completion remains.
 */
import { inspect } from "node:util";
import type { Session } from "../session/session.js";
import { SidecarError } from "../values/errors.js";
import type { AttrEntry } from "../wire/ops.js";

/** Names below dotted paths, per session, cached. */
export class RemoteNames {
  private cache = new Map<string, Promise<AttrEntry[]>>();
  private supported: boolean | undefined;
  private session: Session | undefined;

  constructor(private readonly current: () => Session | undefined) {}

  /** The entries one level below `path` ("" for the roots); null when the sidecar cannot list names. */
  async list(path: string): Promise<AttrEntry[] | null> {
    const session = this.current();
    if (!session || session.closed) return null;
    if (session !== this.session) {
      this.session = session;
      this.cache.clear();
      this.supported = undefined;
    }
    if (this.supported === false) return null;
    let entries = this.cache.get(path);
    if (!entries) {
      entries = session.request("list_attrs", { path }, { timeoutMs: 5000 });
      this.cache.set(path, entries);
    }
    try {
      const got = await entries;
      this.supported = true;
      return got;
    } catch (e) {
      this.cache.delete(path);
      if (e instanceof SidecarError && e.remoteType === "UnknownOp") this.supported = false;
      if (e instanceof SidecarError && e.remoteType === "NotAllowed") return [];
      return null;
    }
  }
}

/** The dotted Python path of a name proxy (`py`, `py.jax`, or what `jb.import` returns), else undefined. */
function proxyPath(v: unknown): string | undefined {
  if (typeof v !== "function") return undefined;
  const path = (v as { $path?: unknown }).$path;
  return typeof path === "string" ? path : undefined;
}

/**
 * Completions for the end of `line` ([matches, the text they replace]), or
 * null when the line does not end in a place this module completes.
 * `lookup` resolves a global name (for `py.jax.<Tab>` and `m.<Tab>` where
 * `m = await jb.import("mypkg")`).
 */
export async function completeRemote(line: string, names: RemoteNames, lookup: (name: string) => unknown): Promise<[string[], string] | null> {
  const chain = /(?:^|[^\w$.])([A-Za-z_$][\w$]*)((?:\.[A-Za-z_]\w*)*)\.(\w*)$/.exec(line);
  if (chain) {
    const root = proxyPath(lookup(chain[1]!));
    if (root !== undefined) {
      const rest = chain[2]!.slice(1);
      const path = [root, rest].filter((p) => p !== "").join(".");
      const prefix = chain[3]!;
      const entries = await names.list(path);
      if (entries === null) return null;
      const base = `${chain[1]}${chain[2]}.`;
      return [entries.filter((e) => e.name.startsWith(prefix)).map((e) => base + e.name), base + prefix];
    }
  }
  const str = /(?:^|[(,=:\s[])(["'`])((?:[A-Za-z_]\w*\.)*\w*)$/.exec(line);
  if (str) {
    const quote = str[1]!;
    const before = line.slice(0, str.index + str[0].length - str[2]!.length - 1);
    // The quote must open a string, not close one.
    if ((before.split(quote).length - 1) % 2 !== 0) return null;
    const dotted = str[2]!;
    const cut = dotted.lastIndexOf(".");
    const path = cut < 0 ? "" : dotted.slice(0, cut);
    const prefix = dotted.slice(cut + 1);
    const entries = await names.list(path);
    if (entries === null) return null;
    const base = cut < 0 ? "" : `${path}.`;
    const hits = entries.filter((e) => e.name.startsWith(prefix)).map((e) => base + e.name);
    return hits.length > 0 ? [hits, dotted] : null;
  }
  return null;
}

/**
 * `py.jax.numpy.sum(x, kw({axis: 0}))`: a proxy for allow-listed Python
 * names that calls through the current session. Never thenable, so
 * `await py.jax` is harmless.
 */
export function pythonNamespace(call: (fn: string, args: unknown[]) => Promise<unknown>, path = ""): unknown {
  const target = (() => {}) as unknown as Record<PropertyKey, unknown>;
  Object.defineProperty(target, inspect.custom, { value: () => `<python ${path || "namespace: py.jax.numpy.sum(x), Tab completes"}>`, configurable: true });
  return new Proxy(target, {
    get(t, prop) {
      if (typeof prop === "symbol") return t[prop];
      if (prop === "then" || prop === "constructor") return undefined;
      if (prop === "$path") return path;
      if (prop === "toString" || prop === "valueOf") return () => `<python ${path}>`;
      return pythonNamespace(call, path ? `${path}.${prop}` : prop);
    },
    apply(_t, _this, args: unknown[]) {
      if (!path) throw new TypeError("py is a namespace: call a function in it, e.g. py.jax.numpy.sum(x)");
      return call(path, args);
    },
    ownKeys: () => [],
    getOwnPropertyDescriptor: () => undefined,
  });
}
