/**
 * `Module`: the TypeScript counterpart of `equinox.Module`, a class whose
 * instances are pytree nodes.
 *
 * ```ts
 * class MLP extends Module {
 *   w: NDArray;
 *   act: string;
 *   static staticFields = ["act"];
 *   constructor(w: NDArray, act: string) {
 *     super();
 *     this.w = w;
 *     this.act = act;
 *   }
 * }
 * ```
 *
 * Fields are the instance's own enumerable string-keyed properties, in
 * insertion order (for class fields: declaration order, base class first).
 * Fields named in `static staticFields` (merged along the class chain) are
 * like `eqx.field(static=True)`: their values are part of the tree structure,
 * compared by value, never leaves. Every other field is a child, reached
 * with an attribute key (`.w`).
 *
 * Not fields: symbol-keyed and non-enumerable properties, getters on the
 * prototype, and `#private` fields (a rebuilt instance does not have them,
 * so methods that read them throw: keep state in ordinary fields). Treat
 * instances as immutable: `replace` gives a changed copy, as
 * `dataclasses.replace` does.
 */

import { BridgeInputError } from "./errors.js";
import { describeAs } from "./describe.js";

/** One field of a Module, in order. */
export interface ModuleField {
  readonly name: string;
  /** Part of the tree structure (`eqx.field(static=True)`) rather than a child. */
  readonly static: boolean;
}

/** A Module subclass (its constructor). */
export type ModuleClass = abstract new (...args: never[]) => Module;

const staticCache = new WeakMap<object, ReadonlySet<string>>();

export class Module {
  /**
   * The class name, for messages (`MLP`). Two classes may share a name; the
   * tree structure tells them apart by identity.
   */
  get className(): string {
    return Module.nameOf(this.constructor as ModuleClass);
  }

  /**
   * A copy with some fields changed, like `dataclasses.replace`. The
   * constructor is not run: the copy has this instance's fields, in the same
   * order, with `changes` applied. Naming a field the instance does not have
   * is an error.
   */
  replace(changes: Partial<this>): this {
    const fields = Module.fieldsOf(this);
    const known = new Set(fields.map((f) => f.name));
    for (const k of Object.keys(changes)) {
      if (!known.has(k)) {
        throw new BridgeInputError(
          `${this.className}.replace: ${JSON.stringify(k)} is not a field of ${this.className} (fields: ${fields.map((f) => f.name).join(", ") || "none"})`,
        );
      }
    }
    const src = this as unknown as Record<string, unknown>;
    const ch = changes as Record<string, unknown>;
    const values = fields.map((f) => (Object.prototype.hasOwnProperty.call(ch, f.name) ? ch[f.name] : src[f.name]));
    return Module.build(Object.getPrototypeOf(this) as object, fields.map((f) => f.name), values) as this;
  }

  /** How a module reads in messages (values/describe.ts): `module MLP`. */
  [describeAs](): string {
    return `module ${this.className}`;
  }

  /** `MLP(w=float32[2, 3], act="relu")`: the module with its fields, as JS writes them (not a message: see describeAs). */
  toString(): string {
    return briefValue(this);
  }

  /** The fields of a Module instance, in order, each marked static or not. */
  static fieldsOf(m: Module): ModuleField[] {
    const statics = Module.staticFieldsOf(m.constructor as ModuleClass);
    return Object.keys(m).map((name) => ({ name, static: statics.has(name) }));
  }

  /**
   * The names a class declares static, merged from `static staticFields`
   * on it and on every base class.
   */
  static staticFieldsOf(cls: ModuleClass): ReadonlySet<string> {
    const hit = staticCache.get(cls);
    if (hit !== undefined) return hit;
    const out = new Set<string>();
    for (let c: unknown = cls; typeof c === "function" && c !== Function.prototype; c = Object.getPrototypeOf(c)) {
      if (!Object.prototype.hasOwnProperty.call(c, "staticFields")) continue;
      const list: unknown = (c as { staticFields?: unknown }).staticFields;
      if (!Array.isArray(list) || !list.every((n) => typeof n === "string")) {
        throw new BridgeInputError(
          `${(c as { name?: string }).name || "a Module class"}.staticFields must be an array of field names, e.g. static staticFields = ["act"]`,
        );
      }
      for (const n of list as string[]) out.add(n);
    }
    const frozen: ReadonlySet<string> = out;
    staticCache.set(cls, frozen);
    return frozen;
  }

  /** The class name of a Module class, for messages. */
  static nameOf(cls: ModuleClass): string {
    return cls.name || "<anonymous Module>";
  }

  /**
   * An instance of the class whose prototype is `proto`, with `names`
   * set to `values` in order, built without running the constructor
   * (`Object.create` and define), as `unflatten` needs.
   */
  static build(proto: object, names: readonly string[], values: readonly unknown[]): Module {
    const out = Object.create(proto) as Module;
    for (let i = 0; i < names.length; i++) {
      Object.defineProperty(out, names[i]!, { value: values[i], writable: true, enumerable: true, configurable: true });
    }
    return out;
  }
}

/** A field value as `Module.toString` writes it: JS literals, child modules in full. */
function briefValue(v: unknown, depth = 0): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "bigint") return `${v}n`;
  if (typeof v === "function") return `function ${v.name || "<anonymous>"}`;
  if (v === null || v === undefined || typeof v !== "object") return String(v);
  if (depth > 3) return "...";
  if (v instanceof Module) {
    const r = v as unknown as Record<string, unknown>;
    return `${v.className}(${Module.fieldsOf(v).map((f) => `${f.name}=${briefValue(r[f.name], depth + 1)}`).join(", ")})`;
  }
  const dt = (v as { dtype?: unknown }).dtype;
  const shape = (v as { shape?: unknown }).shape;
  if (typeof dt === "string" && Array.isArray(shape)) return `${dt}[${shape.join(", ")}]`;
  if (Array.isArray(v)) return `[${v.map((e) => briefValue(e, depth + 1)).join(", ")}]`;
  const proto = Object.getPrototypeOf(v) as unknown;
  if (proto === Object.prototype || proto === null) {
    return `{${Object.keys(v)
      .map((k) => `${JSON.stringify(k)}: ${briefValue((v as Record<string, unknown>)[k], depth + 1)}`)
      .join(", ")}}`;
  }
  return `<${(v as object).constructor?.name ?? "object"}>`;
}
