/**
 * Key paths, as JAX writes them: `[0]['params'].w`. A path is a list of
 * entries (list index, dict key, attribute); dict keys print as Python's
 * `repr` of a str and sort as Python's `sorted()` sorts str keys.
 */

export type KeyEntry = { kind: "index"; index: number } | { kind: "key"; key: string } | { kind: "attr"; name: string };
export type KeyPath = readonly KeyEntry[];

/**
 * A key path in JAX's `keystr` form: `[0]['params'].w`. Dict keys are
 * written as Python's `repr` writes a str. With `simple`, entries are bare
 * (`0`, `params`, `w`) and joined with `separator`, as `keystr(path,
 * simple=True, separator=...)` does.
 */
export function keystr(path: KeyPath, opts: { simple?: boolean; separator?: string } = {}): string {
  const sep = opts.separator ?? "";
  if (opts.simple) return path.map((e) => (e.kind === "index" ? String(e.index) : e.kind === "key" ? e.key : e.name)).join(sep);
  return path.map(entryStr).join(sep);
}

function entryStr(e: KeyEntry): string {
  if (e.kind === "index") return `[${e.index}]`;
  if (e.kind === "key") return `[${pyStrRepr(e.key)}]`;
  return `.${e.name}`;
}

// Python's str.isprintable() is false for these categories (space excepted).
const NON_PRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]/u;
const PLAIN_ASCII = /^[\x20-\x26\x28-\x5b\x5d-\x7e]*$/;

/**
 * `repr(s)` for a Python str: single quotes unless the string holds a single
 * quote and no double quote; `\t \n \r`, `\\`, the quote, and characters
 * Python does not call printable escaped as `\xNN`, `\uNNNN`, `\UNNNNNNNN`.
 * Printability follows this Node's Unicode tables (JAX's Python may be a
 * version behind for newly assigned characters).
 */
export function pyStrRepr(s: string): string {
  if (PLAIN_ASCII.test(s)) return `'${s}'`;
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (ch === quote || ch === "\\") out += `\\${ch}`;
    else if (ch === "\t") out += "\\t";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (cp >= 0x20 && cp < 0x7f) out += ch;
    else if (cp < 0x20 || cp === 0x7f || NON_PRINTABLE.test(ch)) {
      if (cp <= 0xff) out += `\\x${cp.toString(16).padStart(2, "0")}`;
      else if (cp <= 0xffff) out += `\\u${cp.toString(16).padStart(4, "0")}`;
      else out += `\\U${cp.toString(16).padStart(8, "0")}`;
    } else out += ch;
  }
  return out + quote;
}

/**
 * Order of str keys as Python's `sorted()` gives it: by code point. JS's
 * default sort compares UTF-16 code units, which differs when a character
 * beyond U+FFFF (a surrogate pair) meets one in U+E000..U+FFFF.
 */
export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const ca = a.charCodeAt(i);
    const cb = b.charCodeAt(i);
    if (ca === cb) continue;
    if ((ca < 0xd800 || ca > 0xdfff) && (cb < 0xd800 || cb > 0xdfff)) return ca - cb;
    return compareCodePoints(a, b);
  }
  return a.length - b.length;
}

function compareCodePoints(a: string, b: string): number {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next();
    const y = ib.next();
    if (x.done || y.done) return x.done ? (y.done ? 0 : -1) : 1;
    const d = x.value.codePointAt(0)! - y.value.codePointAt(0)!;
    if (d !== 0) return d;
  }
}
