/**
 * Proxies for allow-listed Python modules (`jb.import("mypkg")`): attribute
 * chains build dotted names, a call becomes the session's `call`, and
 * `$dir()` lists what `list_attrs` says a call could reach.
 */
import { inspect } from "node:util";
import type { AttrEntry } from "../wire/ops.js";

/** What a module proxy needs from a session. */
export interface ProxyHost {
  call<T = unknown>(fn: string, ...args: unknown[]): Promise<T>;
  listAttrs(path: string): Promise<AttrEntry[]>;
}

/**
 * A proxy for an allow-listed Python module: `m.MLP(kw({...}))` calls
 * `mypkg.models.MLP` in the sidecar; attribute chains build dotted names.
 * `$path` is the dotted name and `$dir()` lists what the sidecar lets a call
 * reach below it (`$`-names cannot clash with Python identifiers).
 */
export interface PyProxy {
  (...args: unknown[]): Promise<any>;
  readonly $path: string;
  $dir(): Promise<string[]>;
  // Any attribute is another proxy; typed loosely because the names live in Python.
  readonly [name: string]: any;
}

export function pyProxy(host: ProxyHost, path: string): PyProxy {
  const target = function () {} as unknown as PyProxy;
  // util.inspect looks at the proxy's target, not at the get trap.
  Object.defineProperty(target, inspect.custom, { value: () => `<Python ${path}>` });
  return new Proxy(target, {
    get(_t, prop) {
      if (prop === "$path") return path;
      if (prop === "$dir") return async () => (await host.listAttrs(path)).map((e) => e.name);
      // Not thenable, so `await proxy` yields the proxy rather than calling it.
      if (prop === "then" || typeof prop === "symbol") {
        if (prop === inspect.custom) return () => `<Python ${path}>`;
        if (prop === Symbol.toPrimitive) return () => `<Python ${path}>`;
        return undefined;
      }
      return pyProxy(host, `${path}.${prop}`);
    },
    apply(_t, _this, args: unknown[]) {
      return host.call(path, ...args);
    },
    ownKeys() {
      return ["prototype"];
    },
  });
}
