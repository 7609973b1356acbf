/**
 * How a value reads in an error message. Every message that names a value
 * goes through `describe`, so the same value reads the same way in a tree
 * mismatch, a tracer error, a wire check or a lerax utility. Two phrasings:
 *
 * - `describe(v)`: the value itself, briefly, as it sits in a structure
 *   (tree mismatches, static fields, a TreeDef): `'relu'` (strings as Python
 *   writes them, since key paths are JAX's), `3`, `-0`, `5n`, `function
 *   relu`, `float32[2, 3]`, `module MLP`, `[1, 'a']` and `{'k': 1}`
 *   abbreviated, `a Date (1970-01-01T00:00:00.000Z)`, `a Map`.
 * - `describe(v, "kind")`: what sort of thing it is, for "... is X;
 *   expected ...": `null`, `the string "x"`, `number 3`, `a function`,
 *   `a JS array of length 2`, `NDArray float32[3]`, `an object (Foo)`.
 *
 * A class says how its instances read by defining a `[describeAs]()` method
 * (NDArray, DeviceArray, Module and Tracer do), so this module needs none of
 * them and sits below them all.
 */
import { compareKeys, pyStrRepr } from "./keypath.js";

/** The method a class defines to say how its instances read in messages. */
export const describeAs: unique symbol = Symbol("jaxbridge.describeAs");

export interface Describable {
  [describeAs](): string;
}

/** `"value"`: the value as a structure shows it; `"kind"`: what sort of value it is. */
export type Phrasing = "value" | "kind";

export function describe(v: unknown, phrasing: Phrasing = "value"): string {
  return phrasing === "kind" ? kind(v) : brief(v, 0);
}

/** Plain objects (prototype Object.prototype or null): the dicts of a pytree. */
export function isPlainObject(x: unknown): x is Record<string, unknown> {
  if (typeof x !== "object" || x === null || Array.isArray(x)) return false;
  const p = Object.getPrototypeOf(x) as unknown;
  return p === Object.prototype || p === null;
}

function own(v: object): string | undefined {
  const f = (v as Partial<Describable>)[describeAs];
  return typeof f === "function" ? f.call(v) : undefined;
}

function numStr(n: number): string {
  return Object.is(n, -0) ? "-0" : String(n);
}

function article(word: string): string {
  return /^[aeiouAEIOU]/.test(word) ? "an" : "a";
}

function brief(v: unknown, depth: number): string {
  switch (typeof v) {
    case "string":
      return pyStrRepr(v.length > 80 ? `${v.slice(0, 77)}...` : v);
    case "number":
      return numStr(v);
    case "bigint":
      return `${v}n`;
    case "function":
      return `function ${v.name || "<anonymous>"}`;
    case "symbol":
    case "boolean":
    case "undefined":
      return String(v);
  }
  if (v === null) return "null";
  const mine = own(v as object);
  if (mine !== undefined) return mine;
  if (Array.isArray(v)) {
    if (depth > 1) return `[...${v.length}]`;
    return `[${v.slice(0, 8).map((e) => brief(e, depth + 1)).join(", ")}${v.length > 8 ? ", ..." : ""}]`;
  }
  if (isPlainObject(v)) {
    const keys = Object.keys(v).sort(compareKeys);
    if (depth > 1) return `{...${keys.length}}`;
    return `{${keys
      .slice(0, 8)
      .map((k) => `${pyStrRepr(k)}: ${brief(v[k], depth + 1)}`)
      .join(", ")}${keys.length > 8 ? ", ..." : ""}}`;
  }
  const name = (v as object).constructor?.name;
  if (v instanceof Date) return `a Date (${Number.isNaN(v.getTime()) ? "invalid" : v.toISOString()})`;
  return name ? `${article(name)} ${name}` : "an object";
}

function kind(v: unknown): string {
  if (v === null) return "null";
  if (v === undefined) return "undefined";
  if (typeof v === "string") return `the string ${JSON.stringify(v)}`;
  if (typeof v === "function") return "a function";
  if (typeof v !== "object") return `${typeof v} ${String(v)}`;
  if (Array.isArray(v)) return `a JS array of length ${v.length}`;
  const name = (v as object).constructor?.name ?? "Object";
  const mine = own(v);
  if (mine !== undefined) return mine.includes(name) ? mine : `${name} ${mine}`;
  return `an object (${name})`;
}
