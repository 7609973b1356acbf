/**
 * numpy-compatible array repr.
 *
 * `formatNDArray(a)` returns exactly what `repr(np.asarray(a))` prints in
 * numpy 2.x (with ml_dtypes loaded for bfloat16) under the default print
 * options or the ones set with `setPrintOptions`. It follows numpy's
 * `arrayprint` module step by step:
 *
 * - `_formatArray`: nested brackets, hanging indent, wrapping at `linewidth`
 *   (less one column for the closing `)`), `...` summaries with `edgeitems`
 *   rows/columns at each end once `size > threshold`.
 * - `FloatingFormat` in its default `floatmode='maxprec'`: one pass over the
 *   (summarised) values picks positional or scientific notation and the pad
 *   widths, a second pass prints every value with them.
 * - numpy's Dragon4 (`dragon4.c`): shortest digits that round-trip in the
 *   value's own precision (float16 / float32 / float64), with the precision
 *   cut-off and the "print at least N digits" rule, IEEE round-half-even.
 * - `array_repr`: the `shape=` / `dtype=` suffix and where it goes.
 *
 * bfloat16 is not a numpy dtype: numpy formats each element with the
 * scalar's `str()`, which ml_dtypes implements as C++ `ostream << float`
 * (printf `%g`, 6 significant digits), with no alignment.
 */
import {
  type DType,
  bfloat16BitsToNumber,
  float16BitsToNumber,
  isDType,
  numberToFloat16Bits,
} from "./dtype.js";
import { BridgeInputError } from "./errors.js";
import type { NDArray } from "./ndarray.js";

// ---------------------------------------------------------------------------
// Print options
// ---------------------------------------------------------------------------

/** The subset of `np.set_printoptions` that jaxbridge understands. */
export interface PrintOptions {
  /** Digits after the decimal point (positional) or after the first digit (scientific); numpy default 8. */
  precision: number;
  /** Arrays with more elements than this are summarised with `...`; numpy default 1000. `Infinity` never summarises. */
  threshold: number;
  /** Items kept at each end of a summarised axis; numpy default 3. */
  edgeitems: number;
  /** Characters per line before wrapping; numpy default 75. */
  linewidth: number;
  /** Never use scientific notation for small values (they print rounded to `precision`); numpy default false. */
  suppress: boolean;
}

const DEFAULT_OPTIONS: Readonly<PrintOptions> = Object.freeze({
  precision: 8,
  threshold: 1000,
  edgeitems: 3,
  linewidth: 75,
  suppress: false,
});

let currentOptions: PrintOptions = { ...DEFAULT_OPTIONS };

function checkOptions(opts: Partial<PrintOptions>, where: string): void {
  if (opts === null || typeof opts !== "object") throw new BridgeInputError(`${where}: expected an options object`);
  const known = new Set(Object.keys(DEFAULT_OPTIONS));
  for (const [k, v] of Object.entries(opts)) {
    if (!known.has(k)) throw new BridgeInputError(`${where}: unknown print option ${JSON.stringify(k)}; expected one of ${[...known].join(", ")}`);
    if (v === undefined) continue;
    if (k === "suppress") {
      if (typeof v !== "boolean") throw new BridgeInputError(`${where}: suppress must be a boolean, got ${String(v)}`);
    } else if (k === "threshold") {
      if (typeof v !== "number" || Number.isNaN(v) || v < 0 || (Number.isFinite(v) && !Number.isInteger(v))) {
        throw new BridgeInputError(`${where}: threshold must be a non-negative integer or Infinity, got ${String(v)}`);
      }
    } else if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
      throw new BridgeInputError(`${where}: ${k} must be a non-negative integer, got ${String(v)}`);
    }
  }
}

function mergeOptions(base: PrintOptions, opts: Partial<PrintOptions>): PrintOptions {
  const out = { ...base };
  for (const [k, v] of Object.entries(opts)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

/**
 * Like `np.set_printoptions`: options given replace the current ones for all
 * later formatting; options left out keep their value. `resetPrintOptions()`
 * restores numpy's defaults.
 */
export function setPrintOptions(opts: Partial<PrintOptions>): void {
  checkOptions(opts, "setPrintOptions");
  currentOptions = mergeOptions(currentOptions, opts);
}

/** Like `np.get_printoptions`: a copy of the options in force. */
export function getPrintOptions(): PrintOptions {
  return { ...currentOptions };
}

/** Restore numpy's default print options. */
export function resetPrintOptions(): void {
  currentOptions = { ...DEFAULT_OPTIONS };
}

/**
 * Like the `np.printoptions` context manager: run `fn` with some options
 * changed, then restore them. The options are restored when `fn` returns, so
 * format inside `fn` synchronously (not after an `await`).
 */
export function withPrintOptions<T>(opts: Partial<PrintOptions>, fn: () => T): T {
  checkOptions(opts, "withPrintOptions");
  const saved = currentOptions;
  currentOptions = mergeOptions(saved, opts);
  try {
    return fn();
  } finally {
    currentOptions = saved;
  }
}

/** A short description for messages and logs: `float32[2, 3]`, `int32[]` for a 0-d array. */
export function formatSummary(dtype: DType, shape: readonly number[]): string {
  return `${dtype}[${shape.join(", ")}]`;
}

// ---------------------------------------------------------------------------
// Binary floating-point formats and their exact decomposition
// ---------------------------------------------------------------------------

interface FloatKind {
  /** stored mantissa bits */
  readonly mbits: number;
  readonly bias: number;
  /** `np.finfo(dtype).precision`: decimal digits the format resolves */
  readonly finfoPrecision: number;
  /** round a double to the nearest value of this format (returned as a double) */
  readonly round: (x: number) => number;
}

const HALF: FloatKind = {
  mbits: 10,
  bias: 15,
  finfoPrecision: 3,
  round: (x) => float16BitsToNumber(numberToFloat16Bits(x)),
};
const SINGLE: FloatKind = { mbits: 23, bias: 127, finfoPrecision: 6, round: Math.fround };
const DOUBLE: FloatKind = { mbits: 52, bias: 1023, finfoPrecision: 15, round: (x) => x };

/** |x| = mantissa * 2^exponent, laid out as the format stores it (Dragon4's inputs). */
interface Decomposed {
  mantissa: bigint;
  exponent: number;
  /** index of the highest mantissa bit that can be set (the hidden bit for normals) */
  mantissaBit: number;
  /** the gap to the next value below is half the gap above (exact power of two, not the smallest normal) */
  unequalMargins: boolean;
}

const scratchView = new DataView(new ArrayBuffer(8));

function bitLength(n: bigint): number {
  return n === 0n ? 0 : n.toString(2).length;
}

/** Split a finite double that is exactly representable in `kind` into Dragon4's inputs. */
function decompose(x: number, kind: FloatKind): Decomposed {
  scratchView.setFloat64(0, x);
  const hi = scratchView.getUint32(0);
  const lo = scratchView.getUint32(4);
  const biased = (hi >>> 20) & 0x7ff;
  const frac = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  let m: bigint;
  let e: number;
  if (biased === 0) {
    m = frac;
    e = -1074;
  } else {
    m = frac | (1n << 52n);
    e = biased - 1075;
  }
  if (m === 0n) return { mantissa: 0n, exponent: 0, mantissaBit: 0, unequalMargins: false };
  const log2 = e + bitLength(m) - 1; // floor(log2 |x|)
  const minNormal = 1 - kind.bias;
  const exponent = log2 >= minNormal ? log2 - kind.mbits : 1 - kind.bias - kind.mbits;
  const shift = e - exponent;
  const mantissa = shift >= 0 ? m << BigInt(shift) : m >> BigInt(-shift);
  if (log2 >= minNormal) {
    const unequal = log2 + kind.bias !== 1 && mantissa === 1n << BigInt(kind.mbits);
    return { mantissa, exponent, mantissaBit: kind.mbits, unequalMargins: unequal };
  }
  return { mantissa, exponent, mantissaBit: bitLength(mantissa) - 1, unequalMargins: false };
}

function isNegative(x: number): boolean {
  return x < 0 || Object.is(x, -0);
}

// ---------------------------------------------------------------------------
// Dragon4 (Steele & White / Burger & Dybvig, as numpy's dragon4.c runs it)
// ---------------------------------------------------------------------------

const pow10Cache: bigint[] = [1n];
function pow10(n: number): bigint {
  while (pow10Cache.length <= n) pow10Cache.push(pow10Cache[pow10Cache.length - 1]! * 10n);
  return pow10Cache[n]!;
}

const LOG10_2 = 0.30102999566398119521373889472449;

/**
 * Decimal digits of `d` and the base-10 exponent of the first one.
 * `unique`: stop as soon as the digits identify the value among its
 * neighbours in its own format (shortest round-trip), else print the exact
 * value. `cutoffMax` (-1: none) caps the digits: total count
 * (`fraction=false`) or digits after the decimal point (`fraction=true`);
 * `cutoffMin` (-1: none) asks for at least that many, unique mode only.
 * The last digit is rounded half-to-even on the exact value.
 */
function dragon4(
  d: Decomposed,
  unique: boolean,
  fraction: boolean,
  cutoffMax: number,
  cutoffMin: number,
): { digits: string; exp10: number } {
  const { mantissa, exponent, mantissaBit, unequalMargins } = d;
  if (mantissa === 0n) return { digits: "0", exp10: 0 };
  const isEven = (mantissa & 1n) === 0n;

  // value = scaledValue / scale; margins are half the gaps to the neighbours, on the same scale
  let scaledValue: bigint;
  let scale: bigint;
  let marginLow: bigint;
  if (unequalMargins) {
    if (exponent > 0) {
      scaledValue = mantissa << BigInt(exponent + 2);
      scale = 4n;
      marginLow = 1n << BigInt(exponent);
    } else {
      scaledValue = mantissa << 2n;
      scale = 1n << BigInt(-exponent + 2);
      marginLow = 1n;
    }
  } else if (exponent > 0) {
    scaledValue = mantissa << BigInt(exponent + 1);
    scale = 2n;
    marginLow = 1n << BigInt(exponent);
  } else {
    scaledValue = mantissa << 1n;
    scale = 1n << BigInt(-exponent + 1);
    marginLow = 1n;
  }

  // estimate floor(log10 v) + 1; correct or one too low (numpy biases it low on purpose)
  let digitExponent = Math.ceil((mantissaBit + exponent) * LOG10_2 - 0.69);
  if (cutoffMax >= 0 && fraction && digitExponent <= -cutoffMax) digitExponent = -cutoffMax + 1;
  if (digitExponent > 0) scale *= pow10(digitExponent);
  else if (digitExponent < 0) {
    const p = pow10(-digitExponent);
    scaledValue *= p;
    marginLow *= p;
  }
  if (scaledValue >= scale) digitExponent += 1;
  else {
    scaledValue *= 10n;
    marginLow *= 10n;
  }

  const BUFFER = 16384;
  let cutoffMaxExponent = digitExponent - BUFFER;
  if (cutoffMax >= 0) {
    const want = fraction ? -cutoffMax : digitExponent - cutoffMax;
    if (want > cutoffMaxExponent) cutoffMaxExponent = want;
  }
  let cutoffMinExponent = digitExponent;
  if (cutoffMin >= 0) {
    const want = fraction ? -cutoffMin : digitExponent - cutoffMin;
    if (want < cutoffMinExponent) cutoffMinExponent = want;
  }
  let exp10 = digitExponent - 1;

  const out: number[] = [];
  let low = false;
  let high = false;
  let digit = 0;
  if (unique) {
    for (;;) {
      digitExponent -= 1;
      digit = Number(scaledValue / scale);
      scaledValue %= scale;
      const marginHigh = unequalMargins ? marginLow * 2n : marginLow;
      const vHigh = scaledValue + marginHigh;
      low = isEven ? scaledValue <= marginLow : scaledValue < marginLow;
      high = isEven ? vHigh >= scale : vHigh > scale;
      if (((low || high) && digitExponent <= cutoffMinExponent) || digitExponent === cutoffMaxExponent) break;
      out.push(digit);
      scaledValue *= 10n;
      marginLow *= 10n;
    }
  } else {
    for (;;) {
      digitExponent -= 1;
      digit = Number(scaledValue / scale);
      scaledValue %= scale;
      if (scaledValue === 0n || digitExponent === cutoffMaxExponent) break;
      out.push(digit);
      scaledValue *= 10n;
    }
  }

  let roundDown = low;
  if (low === high) {
    const twice = scaledValue * 2n;
    roundDown = twice < scale;
    if (twice === scale) roundDown = (digit & 1) === 0;
  }
  if (roundDown) out.push(digit);
  else if (digit < 9) out.push(digit + 1);
  else {
    // carry through trailing nines
    for (;;) {
      if (out.length === 0) {
        out.push(1);
        exp10 += 1;
        break;
      }
      const last = out.pop()!;
      if (last !== 9) {
        out.push(last + 1);
        break;
      }
    }
  }
  return { digits: out.join(""), exp10 };
}

/** numpy's trim modes: 'k' keep, '.' trim zeros keep point, '0' keep one zero, '-' drop zeros and point. */
type Trim = "k" | "." | "0" | "-";

interface PositionalOpts {
  precision: number; // -1: none
  minDigits: number; // -1: none
  unique: boolean;
  trim: Trim;
  sign: boolean; // '+' for positive values
  padLeft: number; // -1: none
  padRight: number; // -1: none
}

/** `np.format_float_positional` with `fractional=True` for a finite value. */
function formatPositional(x: number, kind: FloatKind, o: PositionalOpts): string {
  const signStr = isNegative(x) ? "-" : o.sign ? "+" : "";
  const { digits, exp10 } = dragon4(decompose(x, kind), o.unique, true, o.precision, o.minDigits);
  let whole: string;
  let frac: string;
  if (exp10 >= 0) {
    const nWhole = exp10 + 1;
    if (digits.length <= nWhole) {
      whole = digits + "0".repeat(nWhole - digits.length);
      frac = "";
    } else {
      whole = digits.slice(0, nWhole);
      frac = digits.slice(nWhole);
    }
  } else {
    whole = "0";
    frac = "0".repeat(-(exp10 + 1)) + digits;
  }
  let point = o.trim !== "-" || frac.length > 0;
  const addDigits = o.unique ? o.minDigits : o.precision;
  const desired = addDigits < 0 ? 0 : addDigits;
  if (o.trim === "0") {
    if (frac.length === 0) frac = "0";
  } else if (o.trim === "k" && desired > frac.length) {
    frac += "0".repeat(desired - frac.length);
  }
  if (o.trim !== "k" && frac.length > 0) {
    frac = frac.replace(/0+$/, "");
    if (frac.length === 0) {
      if (o.trim === "0") frac = "0";
      else if (o.trim === "-") point = false;
    }
  }
  let s = signStr + whole + (point ? "." : "") + frac;
  if (o.padRight >= frac.length) {
    if (o.trim === "-" && frac.length === 0) s += " ";
    s += " ".repeat(o.padRight - frac.length);
  }
  const leftUsed = whole.length + signStr.length;
  if (o.padLeft > leftUsed) s = " ".repeat(o.padLeft - leftUsed) + s;
  return s;
}

interface ScientificOpts {
  precision: number;
  minDigits: number;
  unique: boolean;
  trim: Trim;
  sign: boolean;
  padLeft: number;
  expDigits: number; // -1: at least 2
}

/** `np.format_float_scientific` for a finite value. */
function formatScientific(x: number, kind: FloatKind, o: ScientificOpts): string {
  const signStr = isNegative(x) ? "-" : o.sign ? "+" : "";
  const leftChars = 1 + signStr.length;
  let s = o.padLeft > leftChars ? " ".repeat(o.padLeft - leftChars) : "";
  s += signStr;
  const { digits, exp10 } = dragon4(
    decompose(x, kind),
    o.unique,
    false,
    o.precision < 0 ? -1 : o.precision + 1,
    o.minDigits < 0 ? -1 : o.minDigits + 1,
  );
  let mant = digits.slice(0, 1);
  let frac = digits.slice(1);
  const addDigits = Math.max(0, o.unique ? o.minDigits : o.precision);
  if (o.trim === "0") {
    if (frac.length === 0) frac = "0";
  } else if (o.trim === "k" && addDigits > frac.length) {
    frac += "0".repeat(addDigits - frac.length);
  }
  if (o.trim !== "k" && frac.length > 0) {
    frac = frac.replace(/0+$/, "");
    if (frac.length === 0 && o.trim === "0") frac = "0";
  }
  // dragon4.c keeps the point in every trim mode but '-' without fraction digits
  const point = o.trim !== "-" || digits.length > 1 || frac.length > 0;
  mant += (point ? "." : "") + frac;
  const expDigits = Math.min(5, o.expDigits < 0 ? 2 : o.expDigits);
  const e = Math.abs(exp10).toString().padStart(expDigits, "0");
  return s + mant + "e" + (exp10 >= 0 ? "+" : "-") + e;
}

/** C `printf("%g")` (6 significant digits), as `std::ostream << float` prints: how ml_dtypes shows bfloat16. */
function formatPrintfG(x: number): string {
  if (Number.isNaN(x)) return "nan";
  if (x === Infinity) return "inf";
  if (x === -Infinity) return "-inf";
  const sign = isNegative(x) ? "-" : "";
  const P = 6;
  const { digits, exp10 } = dragon4(decompose(x, SINGLE), false, false, P, -1);
  if (digits === "0") return sign + "0";
  if (exp10 < P && exp10 >= -4) {
    let whole: string;
    let frac: string;
    if (exp10 >= 0) {
      whole = digits.slice(0, exp10 + 1).padEnd(exp10 + 1, "0");
      frac = digits.slice(exp10 + 1);
    } else {
      whole = "0";
      frac = "0".repeat(-exp10 - 1) + digits;
    }
    frac = frac.replace(/0+$/, "");
    return sign + whole + (frac ? "." + frac : "");
  }
  const frac = digits.slice(1).replace(/0+$/, "");
  const e = Math.abs(exp10).toString().padStart(2, "0");
  return sign + digits.slice(0, 1) + (frac ? "." + frac : "") + "e" + (exp10 >= 0 ? "+" : "-") + e;
}

// ---------------------------------------------------------------------------
// Element formatters (numpy's FloatingFormat, ComplexFloatingFormat, ...)
// ---------------------------------------------------------------------------

class FloatingFormat {
  private expFormat = false;
  private precision: number;
  private minDigits = -1;
  private unique = true;
  private trim: Trim = ".";
  private padLeft = 0;
  private padRight = 0;
  private expSize = -1;

  constructor(
    data: readonly number[],
    private readonly kind: FloatKind,
    precision: number,
    suppress: boolean,
    private readonly sign: "-" | "+",
  ) {
    this.precision = precision;
    this.fill(data, suppress);
  }

  private fill(data: readonly number[], suppress: boolean): void {
    const kind = this.kind;
    const finite = data.filter((v) => Number.isFinite(v));
    let maxVal = -Infinity;
    let minVal = Infinity;
    for (const v of finite) {
      if (v === 0) continue;
      const a = Math.abs(v);
      if (a > maxVal) maxVal = a;
      if (a < minVal) minVal = a;
    }
    if (maxVal !== -Infinity) {
      // numpy compares in the array's dtype: Python floats are cast to it (NEP 50)
      const cutoff = 10 ** Math.min(8, kind.finfoPrecision);
      const ratio = kind.round(maxVal / minVal);
      if (maxVal >= cutoff || (!suppress && (minVal < kind.round(0.0001) || ratio > 1000))) this.expFormat = true;
    }
    const plus = this.sign === "+";
    if (finite.length === 0) {
      this.padLeft = 0;
      this.padRight = 0;
      this.trim = ".";
      this.expSize = -1;
      this.unique = true;
      this.minDigits = -1;
    } else if (this.expFormat) {
      let intLen = 0;
      let fracLen = 0;
      let expLen = 0;
      for (const v of finite) {
        const s = formatScientific(v, kind, { precision: this.precision, minDigits: -1, unique: true, trim: ".", sign: plus, padLeft: -1, expDigits: -1 });
        const e = s.indexOf("e");
        const dot = s.indexOf(".");
        intLen = Math.max(intLen, dot);
        fracLen = Math.max(fracLen, e - dot - 1);
        expLen = Math.max(expLen, s.length - e - 1);
      }
      this.expSize = expLen - 1;
      this.trim = "k";
      this.precision = fracLen;
      this.minDigits = fracLen;
      this.unique = true;
      this.padLeft = intLen;
      this.padRight = this.expSize + 2 + this.precision;
    } else {
      let intLen = 0;
      let fracLen = 0;
      for (const v of finite) {
        const s = formatPositional(v, kind, { precision: this.precision, minDigits: -1, unique: true, trim: ".", sign: plus, padLeft: -1, padRight: -1 });
        const dot = s.indexOf(".");
        intLen = Math.max(intLen, dot);
        fracLen = Math.max(fracLen, s.length - dot - 1);
      }
      this.padLeft = intLen;
      this.padRight = fracLen;
      this.expSize = -1;
      this.unique = true;
      this.trim = ".";
      this.minDigits = 0;
    }
    if (finite.length !== data.length) {
      const negInf = this.sign !== "-" || data.some((v) => v === -Infinity) ? 1 : 0;
      const offset = this.padRight + 1;
      this.padLeft = Math.max(this.padLeft, 3 - offset, 3 + negInf - offset);
    }
  }

  format(x: number): string {
    if (!Number.isFinite(x)) {
      const ret = Number.isNaN(x) ? (this.sign === "+" ? "+nan" : "nan") : (x < 0 ? "-" : this.sign === "+" ? "+" : "") + "inf";
      return " ".repeat(Math.max(0, this.padLeft + this.padRight + 1 - ret.length)) + ret;
    }
    if (this.expFormat) {
      return formatScientific(x, this.kind, {
        precision: this.precision,
        minDigits: this.minDigits,
        unique: this.unique,
        trim: this.trim,
        sign: this.sign === "+",
        padLeft: this.padLeft,
        expDigits: this.expSize,
      });
    }
    return formatPositional(x, this.kind, {
      precision: this.precision,
      minDigits: this.minDigits,
      unique: this.unique,
      trim: this.trim,
      sign: this.sign === "+",
      padLeft: this.padLeft,
      padRight: this.padRight,
    });
  }
}

/** Formats the element at a flat C-order index. */
type ElementFormatter = (flat: number) => string;

function pyIntStr(v: number | bigint): string {
  return typeof v === "bigint" ? v.toString() : String(v);
}

/**
 * The formatter numpy picks for this dtype, sized from the elements at
 * `sample` (all of them, or the corners of a summarised array).
 */
function makeFormatter(a: NDArray, sample: readonly number[], opts: PrintOptions): ElementFormatter {
  const data = a.data;
  const dtype = a.dtype;
  switch (dtype) {
    case "bool": {
      const t = a.ndim === 0 ? "True" : " True";
      return (i) => (data[i] ? t : "False");
    }
    case "int8":
    case "int16":
    case "int32":
    case "int64":
    case "uint8":
    case "uint16":
    case "uint32":
    case "uint64": {
      const vals = data as unknown as ArrayLike<number | bigint>;
      let max = vals[sample[0]!]!;
      let min = max;
      for (const i of sample) {
        const v = vals[i]!;
        if (v > max) max = v;
        if (v < min) min = v;
      }
      const width = Math.max(pyIntStr(max).length, pyIntStr(min).length);
      return (i) => pyIntStr(vals[i]!).padStart(width);
    }
    case "bfloat16":
      return (i) => formatPrintfG(bfloat16BitsToNumber(data[i] as number));
    case "float16": {
      const f = new FloatingFormat(
        sample.map((i) => float16BitsToNumber(data[i] as number)),
        HALF,
        opts.precision,
        opts.suppress,
        "-",
      );
      return (i) => f.format(float16BitsToNumber(data[i] as number));
    }
    case "float32":
    case "float64": {
      const vals = data as Float32Array | Float64Array;
      const f = new FloatingFormat(
        sample.map((i) => vals[i]!),
        dtype === "float32" ? SINGLE : DOUBLE,
        opts.precision,
        opts.suppress,
        "-",
      );
      return (i) => f.format(vals[i]!);
    }
    case "complex64":
    case "complex128": {
      const vals = data as Float32Array | Float64Array;
      const kind = dtype === "complex64" ? SINGLE : DOUBLE;
      const re = new FloatingFormat(sample.map((i) => vals[2 * i]!), kind, opts.precision, opts.suppress, "-");
      const im = new FloatingFormat(sample.map((i) => vals[2 * i + 1]!), kind, opts.precision, opts.suppress, "+");
      return (i) => {
        const r = re.format(vals[2 * i]!);
        const s = im.format(vals[2 * i + 1]!);
        const end = s.trimEnd().length;
        return r + s.slice(0, end) + "j" + s.slice(end);
      };
    }
    default: {
      const never: never = dtype;
      throw new BridgeInputError(`cannot format dtype ${String(never)}`);
    }
  }
}

// ---------------------------------------------------------------------------
// Layout (numpy's _leading_trailing, _formatArray, array_repr)
// ---------------------------------------------------------------------------

function cStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let k = shape.length - 1; k >= 0; k--) {
    strides[k] = s;
    s *= shape[k]!;
  }
  return strides;
}

/** Flat indices of the elements a summarised array shows (all of them when nothing is cut). */
function shownIndices(shape: readonly number[], strides: readonly number[], edge: number, summarise: boolean): number[] {
  const out: number[] = [];
  const visit = (axis: number, offset: number): void => {
    if (axis === shape.length) {
      out.push(offset);
      return;
    }
    const n = shape[axis]!;
    const st = strides[axis]!;
    if (summarise && n > 2 * edge) {
      for (let i = 0; i < edge; i++) visit(axis + 1, offset + i * st);
      // numpy slices a[-edge:], and a[-0:] is the whole axis
      for (let i = edge === 0 ? 0 : n - edge; i < n; i++) visit(axis + 1, offset + i * st);
    } else {
      for (let i = 0; i < n; i++) visit(axis + 1, offset + i * st);
    }
  };
  visit(0, 0);
  return out;
}

function extendLine(s: string, line: string, word: string, lineWidth: number, nextLinePrefix: string): [string, string] {
  let needsWrap = line.length + word.length > lineWidth;
  // don't wrap lines if it won't help
  if (line.length <= nextLinePrefix.length) needsWrap = false;
  if (needsWrap) {
    s += line.trimEnd() + "\n";
    line = nextLinePrefix;
  }
  return [s, line + word];
}

function formatArrayBody(
  shape: readonly number[],
  strides: readonly number[],
  fmt: ElementFormatter,
  lineWidth: number,
  nextLinePrefix: string,
  separator: string,
  edgeItems: number,
  summaryInsert: string,
): string {
  const sepTrimmed = separator.trimEnd();
  const recurse = (axis: number, offset: number, hangingIndent: string, currWidth: number): string => {
    const axesLeft = shape.length - axis;
    if (axesLeft === 0) return fmt(offset);
    const nextHanging = hangingIndent + " ";
    const nextWidth = currWidth - 1; // len("]")
    const n = shape[axis]!;
    const st = strides[axis]!;
    const showSummary = summaryInsert !== "" && 2 * edgeItems < n;
    const leading = showSummary ? edgeItems : 0;
    const trailing = showSummary ? edgeItems : n;
    let s = "";
    if (axesLeft === 1) {
      const elemWidth = currWidth - Math.max(sepTrimmed.length, 1);
      let line = hangingIndent;
      for (let i = 0; i < leading; i++) {
        const word = recurse(axis + 1, offset + i * st, nextHanging, nextWidth);
        [s, line] = extendLine(s, line, word, elemWidth, hangingIndent);
        line += separator;
      }
      if (showSummary) {
        [s, line] = extendLine(s, line, summaryInsert, elemWidth, hangingIndent);
        line += separator;
      }
      for (let i = trailing; i > 1; i--) {
        const word = recurse(axis + 1, offset + (n - i) * st, nextHanging, nextWidth);
        [s, line] = extendLine(s, line, word, elemWidth, hangingIndent);
        line += separator;
      }
      const word = recurse(axis + 1, offset + (n - 1) * st, nextHanging, nextWidth);
      [s, line] = extendLine(s, line, word, elemWidth, hangingIndent);
      s += line;
    } else {
      const lineSep = sepTrimmed + "\n".repeat(axesLeft - 1);
      for (let i = 0; i < leading; i++) {
        s += hangingIndent + recurse(axis + 1, offset + i * st, nextHanging, nextWidth) + lineSep;
      }
      if (showSummary) s += hangingIndent + summaryInsert + lineSep;
      for (let i = trailing; i > 1; i--) {
        s += hangingIndent + recurse(axis + 1, offset + (n - i) * st, nextHanging, nextWidth) + lineSep;
      }
      s += hangingIndent + recurse(axis + 1, offset + (n - 1) * st, nextHanging, nextWidth);
    }
    return "[" + s.slice(hangingIndent.length) + "]";
  };
  return recurse(0, 0, nextLinePrefix, lineWidth);
}

/** Python's repr of a shape tuple: `()`, `(3,)`, `(2, 0, 3)`. */
function pyShape(shape: readonly number[]): string {
  if (shape.length === 1) return `(${shape[0]},)`;
  return `(${shape.join(", ")})`;
}

/** numpy leaves out `dtype=` for the types its repr implies: int64 (the default int on 64-bit Linux/macOS), float64, complex128, bool. */
const IMPLIED_DTYPES: ReadonlySet<DType> = new Set<DType>(["bool", "int64", "float64", "complex128"]);

/**
 * `repr(arr)` as numpy prints it, e.g. `array([1. , 2.5], dtype=float32)`.
 * `overrides` apply to this call only, on top of `getPrintOptions()`.
 */
export function formatNDArray(a: NDArray, overrides?: Partial<PrintOptions>): string {
  let opts = currentOptions;
  if (overrides !== undefined) {
    checkOptions(overrides, "formatNDArray");
    opts = mergeOptions(opts, overrides);
  }
  const dtype = a.dtype;
  if (!isDType(dtype)) throw new BridgeInputError(`cannot format dtype ${JSON.stringify(dtype)}`);
  const shape = a.shape;
  let size = 1;
  for (const d of shape) size *= d;
  const prefix = "array(";

  let body: string;
  if (size === 0) body = "[]";
  else {
    const strides = cStrides(shape);
    const summarise = size > opts.threshold;
    const sample = shownIndices(shape, strides, opts.edgeitems, summarise);
    const fmt = makeFormatter(a, sample, opts);
    body = formatArrayBody(shape, strides, fmt, opts.linewidth - 1, " ".repeat(prefix.length + 1), ", ", opts.edgeitems, summarise ? "..." : "");
  }

  const extras: string[] = [];
  if ((size === 0 && !(shape.length === 1 && shape[0] === 0)) || size > opts.threshold) extras.push(`shape=${pyShape(shape)}`);
  if (!IMPLIED_DTYPES.has(dtype) || size === 0) extras.push(`dtype=${dtype}`);
  if (extras.length === 0) return prefix + body + ")";

  const arrStr = prefix + body + ",";
  const extraStr = extras.join(", ") + ")";
  const lastLineLen = arrStr.length - (arrStr.lastIndexOf("\n") + 1);
  const spacer = lastLineLen + extraStr.length + 1 > opts.linewidth ? "\n" + " ".repeat(prefix.length) : " ";
  return arrStr + spacer + extraStr;
}
