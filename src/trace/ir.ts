/**
 * The Program IR: what a traced TypeScript function becomes, what crosses
 * the wire, and what `lower.py` turns back into `jax.lax` calls. See
 * README.md in this folder for the why.
 *
 * Variables are numbered implicitly: a program's inputs are 0..n-1 and each
 * equation's outputs take the next numbers in order, so the numbering is a
 * function of the program and the encoding is canonical by construction.
 */

import { createHash } from "node:crypto";
import type { DType } from "../values/dtype.js";
import type { WireSharding } from "../values/sharding.js";
import { showLiteral } from "./dtypes.js";

/** 2: the transformations (grad, vmap, ...), shard_map, the collectives, sharding constraints and jit's shardings. */
export const IR_VERSION = 2;

/** The type of a value: dtype and shape (weakness is a tracing concern and never reaches the IR). */
export interface Aval {
  readonly dtype: DType;
  readonly shape: readonly number[];
}

/** A scalar constant with its dtype and exact value (ints decimal, floats their bits as hex). */
export interface Literal {
  readonly lit: string;
  readonly dtype: DType;
}

/** An operand: a variable number, or a literal. */
export type Operand = number | Literal;

export type ParamValue = number | boolean | string | null | readonly ParamValue[] | SubProgram | { readonly [k: string]: ParamValue };

export interface Eqn {
  readonly prim: string;
  readonly inputs: readonly Operand[];
  readonly params: { readonly [k: string]: ParamValue };
  readonly outputs: readonly Aval[];
}

/** A program without the header: the form sub-programs (branches, bodies) take. */
export interface SubProgram {
  readonly inputs: readonly Aval[];
  readonly eqns: readonly Eqn[];
  readonly outputs: readonly Operand[];
}

/** A top-level program: a sub-program with the IR version and the x64 mode it was traced for. */
export interface Program extends SubProgram {
  readonly version: number;
  readonly x64: boolean;
  /** `jax.jit`'s in_shardings: one per declared input (null: unspecified); only in programs jitted with shardings. */
  readonly in_shardings?: readonly (WireSharding | null)[];
  /** `jax.jit`'s out_shardings: one per output (null: unspecified). */
  readonly out_shardings?: readonly (WireSharding | null)[];
}

export function isSubProgram(x: unknown): x is SubProgram {
  return typeof x === "object" && x !== null && !Array.isArray(x) && Array.isArray((x as SubProgram).eqns) && Array.isArray((x as SubProgram).inputs);
}

// --- canonical encoding ---------------------------------------------------------

/**
 * Canonical JSON: object keys sorted by code unit, no whitespace, only
 * strings, safe integers, booleans, null, arrays and objects. A float
 * anywhere is an error (literal values are strings), so no two encoders can
 * disagree on a number's spelling. Strings are ASCII by construction
 * (dtype names, primitive names, literal digits), which the encoder checks.
 */
export function canonicalJson(value: unknown): string {
  // Paths are only spelled out for an error message: keep the keys on a stack.
  const stack: (string | number)[] = [];
  const where = (): string => `program${stack.map((k) => (typeof k === "number" ? `[${k}]` : `.${k}`)).join("")}`;
  const visit = (v: unknown): string => {
    if (v === null) return "null";
    switch (typeof v) {
      case "boolean":
        return v ? "true" : "false";
      case "number":
        if (!Number.isSafeInteger(v)) throw new TypeError(`canonical encoding: ${where()} is ${v}, not a safe integer (floats travel as literal bits)`);
        return Object.is(v, -0) ? "0" : String(v);
      case "string":
        return jsonString(v, where);
      case "object":
        break;
      default:
        throw new TypeError(`canonical encoding: ${where()} is a ${typeof v}`);
    }
    let out: string;
    if (Array.isArray(v)) {
      out = "[";
      for (let i = 0; i < v.length; i++) {
        if (i) out += ",";
        stack.push(i);
        out += visit(v[i]);
        stack.pop();
      }
      return out + "]";
    }
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o).sort();
    out = "{";
    let first = true;
    for (const k of keys) {
      const x = o[k];
      if (x === undefined) continue;
      if (!first) out += ",";
      first = false;
      stack.push(k);
      out += jsonString(k, where) + ":" + visit(x);
      stack.pop();
    }
    return out + "}";
  };
  return visit(value);
}

const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;
const JSON_STRINGS = new Map<string, string>();

/** A string's JSON, checked to be printable ASCII (primitive names, keys, dtypes and literal digits repeat: cached). */
function jsonString(s: string, where: () => string): string {
  let j = JSON_STRINGS.get(s);
  if (j !== undefined) return j;
  if (!PRINTABLE_ASCII.test(s)) throw new TypeError(`canonical encoding: ${where()} is a string with characters outside printable ASCII`);
  j = JSON.stringify(s);
  if (JSON_STRINGS.size < 4096) JSON_STRINGS.set(s, j);
  return j;
}

/** The bytes that travel and that the sidecar hashes. */
export function encodeProgram(p: Program): Uint8Array {
  return new TextEncoder().encode(canonicalJson(p));
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

export function decodeProgram(bytes: Uint8Array | string): Program {
  const text = typeof bytes === "string" ? bytes : new TextDecoder().decode(bytes);
  return JSON.parse(text) as Program;
}

// --- printing -------------------------------------------------------------------

const SHORT: Partial<Record<DType, string>> = {
  bool: "bool",
  int8: "i8",
  int16: "i16",
  int32: "i32",
  int64: "i64",
  uint8: "u8",
  uint16: "u16",
  uint32: "u32",
  uint64: "u64",
  float16: "f16",
  bfloat16: "bf16",
  float32: "f32",
  float64: "f64",
  complex64: "c64",
  complex128: "c128",
};

export function showAval(a: Aval): string {
  return `${SHORT[a.dtype] ?? a.dtype}[${a.shape.join(",")}]`;
}

/** A jaxpr-like listing of a program, for errors, debugging and the README. */
export function printProgram(p: SubProgram, indent = ""): string {
  const names: string[] = [];
  const name = (i: number): string => {
    let s = "";
    let n = i;
    do {
      s = String.fromCharCode(97 + (n % 26)) + s;
      n = Math.floor(n / 26) - 1;
    } while (n >= 0);
    return s;
  };
  let next = 0;
  const fresh = (): string => {
    const s = name(next++);
    names.push(s);
    return s;
  };
  const op = (o: Operand): string => (typeof o === "number" ? (names[o] ?? `?${o}`) : `${showLiteral(o.lit, o.dtype)}:${SHORT[o.dtype]}[]`);
  const ins = p.inputs.map((a) => `${fresh()}:${showAval(a)}`).join(" ");
  const lines = [`${indent}{ lambda ${ins}. let`];
  for (const e of p.eqns) {
    const args = e.inputs.map(op).join(" ");
    const subs: string[] = [];
    const params = Object.entries(e.params)
      .filter(([, v]) => {
        if (isSubProgram(v) || (Array.isArray(v) && v.length > 0 && v.every(isSubProgram))) return false;
        return true;
      })
      .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
      .join(" ");
    for (const [k, v] of Object.entries(e.params)) {
      if (isSubProgram(v)) subs.push(`${indent}      ${k}=\n${printProgram(v, indent + "        ")}`);
      else if (Array.isArray(v) && v.length > 0 && v.every(isSubProgram)) v.forEach((b, i) => subs.push(`${indent}      ${k}[${i}]=\n${printProgram(b as SubProgram, indent + "        ")}`));
    }
    const outs = e.outputs.map((a) => `${fresh()}:${showAval(a)}`).join(" ");
    lines.push(`${indent}    ${outs} = ${e.prim}${params ? `[${params}]` : ""} ${args}`);
    lines.push(...subs);
  }
  lines.push(`${indent}  in (${p.outputs.map(op).join(", ")}) }`);
  return lines.join("\n");
}
