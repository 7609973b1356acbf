/**
 * The array methods on DeviceArray (`x.add(1)`, `x.sum({axis: 0})`,
 * `x.get(0)`, `x.at(0).set(1)`, `x.T`): the same methods as Tracer's
 * (../array-methods.ts), each wrapped so that outside a traced function it
 * runs at once on the sidecar (../../eager.ts) and returns a DeviceArray;
 * inside one (a DeviceArray a traced function captured) it records
 * equations like any jnp call.
 */
import { DeviceArray } from "../../../values/device-array.js";
import { currentTrace } from "../../core.js";
import { eagerCall } from "../../eager.js";
import { type ArrayMethods, type AtMethods, METHODS, transposeT } from "../array-methods.js";
import { AtIndexer, type ArrayLike, type Index } from "../jnp.js";
import type { Tracer } from "../../tracer.js";

declare module "../../../values/device-array.js" {
  // The class gets the methods at run time from installEagerMethods below.
  interface DeviceArray extends ArrayMethods<DeviceArray> {}
}

type Method = (this: Tracer, ...args: never[]) => unknown;
type Update = "get" | "set" | "add" | "multiply" | "min" | "max";

/** `x.at(...)` of a DeviceArray: each update is one eager op (`x.at.set`), or records equations inside a trace. */
class EagerAt implements AtMethods<DeviceArray> {
  constructor(
    readonly x: DeviceArray,
    readonly index: readonly Index[],
  ) {}
  #run(kind: Update, v?: ArrayLike): DeviceArray {
    const go = (x: Tracer, index: readonly Index[], u?: ArrayLike): unknown => (kind === "get" ? new AtIndexer(x, index).get() : new AtIndexer(x, index)[kind](u!));
    if (currentTrace() !== undefined) return go(this.x as unknown as Tracer, this.index, v) as DeviceArray;
    return eagerCall(`x.at.${kind}`, go as never, kind === "get" ? [this.x, this.index] : [this.x, this.index, v]) as DeviceArray;
  }
  get(): DeviceArray {
    return this.#run("get");
  }
  set(v: ArrayLike): DeviceArray {
    return this.#run("set", v);
  }
  add(v: ArrayLike): DeviceArray {
    return this.#run("add", v);
  }
  multiply(v: ArrayLike): DeviceArray {
    return this.#run("multiply", v);
  }
  min(v: ArrayLike): DeviceArray {
    return this.#run("min", v);
  }
  max(v: ArrayLike): DeviceArray {
    return this.#run("max", v);
  }
}

function define(name: string, value: unknown): void {
  Object.defineProperty(DeviceArray.prototype, name, { value, writable: true, configurable: true, enumerable: false });
}

/** Install the array methods on DeviceArray (done once, when the library loads). */
export function installEagerMethods(): void {
  for (const [name, fn] of Object.entries(METHODS) as [string, Method][]) {
    if (name === "at") continue;
    const op = `x.${name}`;
    // The op as a function of its array first: what the eager tracer calls with tracers in place.
    const call = (self: Tracer, ...args: never[]): unknown => fn.apply(self, args);
    define(name, function (this: DeviceArray, ...args: never[]): unknown {
      return currentTrace() !== undefined ? fn.apply(this as unknown as Tracer, args) : eagerCall(op, call as never, [this, ...args]);
    });
  }
  define("at", function (this: DeviceArray, ...index: Index[]) {
    return new EagerAt(this, index);
  });
  const t = (self: Tracer): unknown => transposeT.call(self);
  Object.defineProperty(DeviceArray.prototype, "T", {
    get(this: DeviceArray) {
      return currentTrace() !== undefined ? transposeT.call(this as unknown as Tracer) : eagerCall("x.T", t as never, [this]);
    },
    configurable: true,
    enumerable: false,
  });
}
