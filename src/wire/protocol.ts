/**
 * The wire, version 2: the TypeScript half of docs/protocol.md, and the only
 * module that packs or unpacks messages. Arrays travel as trailing frames
 * described by msgpack extension types, never inside msgpack.
 */
import { Packr, Unpackr, addExtension } from "msgpackr";
import { type DType, dtypeInfo, isDType } from "../values/dtype.js";
import { NDArray, shapeSize } from "../values/ndarray.js";
import { DeviceArray, type HandleOwner } from "../values/device-array.js";
import type { WireLayout } from "../values/sharding.js";
import { ProtocolError } from "../values/errors.js";
import { PyRef, RemoteModule, makeRemoteModule } from "../values/remote.js";
import { Module } from "../values/module.js";
import type { TemplateNode } from "./ops.js";

/** What decoding a reply needs from the session: handles, and PyRefs deduplicated per id. */
export interface WireOwner extends HandleOwner {
  adoptPyRef(id: number, pythonType: string, repr: string): PyRef;
}

export const PROTOCOL_VERSION = 2;
/** Arrays larger than this are split over several frames (measured: bigger frames move at half speed). */
export const MAX_FRAME_BYTES = 16 * 1024 * 1024;
export const EXT_ARRAY = 1;
export const EXT_HANDLE = 2;
export const EXT_PYREF = 3;
export const EXT_MODULE = 4;

export type Frame = Buffer;

/**
 * A handle id as msgpack must carry it: an integer. msgpackr writes a number
 * beyond 32 bits as a float64, and the sidecar's ids are up to 2**53
 * (docs/protocol.md, "Sessions"), so those go as BigInt (uint64).
 */
export function wireId(id: number): number | bigint {
  return id >= 0x100000000 ? BigInt(id) : id;
}

/**
 * A call template (`pycall_shapes`) as msgpack must carry it: its object ids
 * through wireId. Programs carry the same templates as canonical JSON, where
 * an id is an exact integer already.
 */
export function wireTemplate(node: TemplateNode): TemplateNode {
  if (node === null || typeof node !== "object") return node;
  if ("ref" in node) return { ref: wireId(Number(node.ref)) };
  if ("list" in node) return { list: node.list.map(wireTemplate) };
  if ("dict" in node) return { dict: node.dict.map(([k, v]) => [k, wireTemplate(v)] as const) };
  return { module: node.module, fields: node.fields.map(([k, v]) => [k, wireTemplate(v)] as const) };
}

/** A handle named in a request without a DeviceArray object (the session's own bookkeeping). */
export class HandleRef {
  constructor(readonly id: number) {}
}

// msgpackr's extensions are process-wide; the per-message state they need
// (frames being built or read, the owner of decoded handles) is set around
// each synchronous pack/unpack call.
let outFrames: Frame[] | null = null;
let inFrames: readonly Frame[] | null = null;
let inUsed: boolean[] = [];
let inOwner: WireOwner | null = null;
let inHandles: DeviceArray[] = [];
/** While set, extensions decode to null: reading only the envelope's id. */
let peeking = false;

const inner = new Packr({ useRecords: false, encodeUndefinedAsNil: true });
const innerU = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: "number" });

function frameView(a: NDArray): Buffer {
  const d = a.data;
  return Buffer.from(d.buffer, d.byteOffset, d.byteLength);
}

addExtension({
  Class: NDArray,
  type: EXT_ARRAY,
  pack(a: NDArray): Buffer {
    if (outFrames === null) throw new ProtocolError("NDArray packed outside a message");
    const bytes = frameView(a);
    const first = outFrames.length + 1;
    for (let at = 0; at < bytes.length; at += MAX_FRAME_BYTES) outFrames.push(bytes.subarray(at, Math.min(bytes.length, at + MAX_FRAME_BYTES)));
    return inner.pack([a.dtype, [...a.shape], first, outFrames.length + 1 - first]);
  },
  unpack(payload: Buffer): NDArray | null {
    if (peeking) return null;
    const fields = innerU.unpack(payload) as unknown;
    if (!Array.isArray(fields) || fields.length !== 4) throw new ProtocolError(`array ext payload must be [dtype, shape, first_frame, frame_count], got ${JSON.stringify(fields)}`);
    const [dtype, shape, first, count] = fields as [unknown, unknown, unknown, unknown];
    return readArray(dtype, shape, first, count);
  },
});

// Registered before DeviceArray: both pack as ext 2, and msgpackr keeps the
// last registered unpacker for a type, which must be DeviceArray's.
addExtension({
  Class: HandleRef,
  type: EXT_HANDLE,
  pack(h: HandleRef): Buffer {
    return inner.pack([wireId(h.id)]);
  },
});

addExtension({
  Class: DeviceArray,
  type: EXT_HANDLE,
  pack(a: DeviceArray): Buffer {
    return inner.pack([wireId(a.handle)]);
  },
  unpack(payload: Buffer): DeviceArray | null {
    if (peeking) return null;
    const f = innerU.unpack(payload) as unknown;
    if (!Array.isArray(f) || (f.length !== 4 && f.length !== 5)) throw new ProtocolError(`handle ext payload in a reply must be [id, dtype, shape, device] or [id, dtype, shape, device, layout], got ${JSON.stringify(f)}`);
    const [id, dtype, shape, device, layout] = f as [number, DType, number[], string, WireLayout | undefined];
    if (!isDType(dtype)) throw new ProtocolError(`handle ${id} has unsupported dtype ${JSON.stringify(dtype)}`);
    if (layout !== undefined && (typeof layout !== "object" || layout === null || !Array.isArray(layout.shards))) throw new ProtocolError(`handle ${id} has a malformed layout ${JSON.stringify(layout)}`);
    if (inOwner === null) throw new ProtocolError("handle decoded without a session");
    const a = new DeviceArray(inOwner, id, dtype, shape, device, layout);
    inHandles.push(a);
    return a;
  },
});

addExtension({
  Class: PyRef,
  type: EXT_PYREF,
  pack(r: PyRef): Buffer {
    return inner.pack([wireId(r.id)]);
  },
  unpack(payload: Buffer): PyRef | null {
    if (peeking) return null;
    const f = innerU.unpack(payload) as unknown;
    if (!Array.isArray(f) || f.length !== 3) throw new ProtocolError(`pyref ext payload in a reply must be [id, type, repr], got ${JSON.stringify(f)}`);
    if (inOwner === null) throw new ProtocolError("pyref decoded without a session");
    return inOwner.adoptPyRef(f[0] as number, String(f[1]), String(f[2]));
  },
});

addExtension({
  Class: RemoteModule,
  type: EXT_MODULE,
  pack(m: RemoteModule): Buffer {
    const fields: Record<string, unknown> = {};
    for (const { name, static: isStatic } of Module.fieldsOf(m)) if (!isStatic) fields[name] = (m as unknown as Record<string, unknown>)[name];
    return inner.pack([(m.constructor as typeof RemoteModule).remoteKey, fields]);
  },
  unpack(payload: Buffer): RemoteModule | null {
    if (peeking) return null;
    const f = innerU.unpack(payload) as unknown;
    if (!Array.isArray(f) || f.length !== 3 || typeof f[0] !== "string" || typeof f[2] !== "object") throw new ProtocolError("module ext payload in a reply must be [key, qualname, {field: value}]");
    if (inOwner === null) throw new ProtocolError("module decoded without a session");
    return makeRemoteModule(inOwner.instance, f[0], String(f[1]), f[2] as Record<string, unknown>);
  },
});

function readArray(dtype: unknown, shape: unknown, first: unknown, count: unknown): NDArray {
  if (!isDType(dtype)) throw new ProtocolError(`unsupported dtype ${JSON.stringify(dtype)} in a reply`);
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new ProtocolError(`bad shape ${JSON.stringify(shape)}`);
  const frames = inFrames;
  if (frames === null) throw new ProtocolError("array decoded outside a message");
  if (typeof first !== "number" || typeof count !== "number" || first < 1 || count < 0 || first - 1 + count > frames.length) {
    throw new ProtocolError(`array refers to frames ${String(first)}+${String(count)}, the message has frames 1..${frames.length}`);
  }
  const info = dtypeInfo(dtype);
  const n = shapeSize(shape as number[]);
  const want = n * info.itemsize;
  let got = 0;
  for (let i = first - 1; i < first - 1 + count; i++) {
    if (inUsed[i]) throw new ProtocolError(`frame ${i + 1} is claimed by two arrays`);
    inUsed[i] = true;
    got += frames[i]!.length;
  }
  if (got !== want) throw new ProtocolError(`array ${dtype}[${(shape as number[]).join(", ")}] needs ${want} bytes, its frames hold ${got}`);
  const elems = n * info.lanes;
  const slot = info.ctor.BYTES_PER_ELEMENT;
  if (count === 1) {
    const f = frames[first - 1]!;
    // View the frame in place when aligned for the element type; else copy once.
    if (f.byteOffset % slot === 0) return new NDArray(new info.ctor(f.buffer, f.byteOffset, elems), shape as number[], dtype);
  }
  const data = new info.ctor(elems);
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  let at = 0;
  for (let i = first - 1; i < first - 1 + count; i++) {
    bytes.set(frames[i]!, at);
    at += frames[i]!.length;
  }
  return new NDArray(data, shape as number[], dtype);
}

const packr = new Packr({ useRecords: false, encodeUndefinedAsNil: true, moreTypes: false });
// "auto": 64-bit integers become numbers when exact, BigInt otherwise (runtime option missing from the typings).
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: "auto" as "bigint" });

/** Pack an envelope; NDArrays in it become trailing frames, DeviceArrays handles. */
export function encode(envelope: Record<string, unknown>): Frame[] {
  const frames: Frame[] = [];
  outFrames = frames;
  try {
    const head = packr.pack(envelope);
    return [head, ...frames];
  } finally {
    outFrames = null;
  }
}

export interface Decoded {
  envelope: Record<string, unknown>;
  /** DeviceArrays created while decoding (so an abandoned reply's handles can be freed). */
  handles: DeviceArray[];
}

/** Unpack a reply. Arrays view their frames where alignment allows; handles become DeviceArrays owned by `owner`. */
export function decode(frames: readonly Frame[], owner: WireOwner | null): Decoded {
  if (frames.length === 0) throw new ProtocolError("empty message");
  inFrames = frames.slice(1);
  inUsed = new Array(frames.length - 1).fill(false);
  inOwner = owner;
  inHandles = [];
  try {
    let env: unknown;
    try {
      env = unpackr.unpack(frames[0]!) as unknown;
    } catch (e) {
      if (e instanceof ProtocolError) throw e;
      throw new ProtocolError(`a message from the sidecar is not valid msgpack: ${(e as Error).message ?? String(e)}`);
    }
    if (typeof env !== "object" || env === null || Array.isArray(env)) throw new ProtocolError(`envelope must be a map, got ${env === null ? "nil" : Array.isArray(env) ? "a list" : typeof env}`);
    const unused = inUsed.flatMap((u, i) => (u ? [] : [i + 1]));
    if (unused.length) throw new ProtocolError(`frames ${unused.join(", ")} are not described by the envelope`);
    return { envelope: env as Record<string, unknown>, handles: inHandles };
  } finally {
    inFrames = null;
    inOwner = null;
    inHandles = [];
  }
}

/** Read a bare envelope's id without decoding arrays (for replies that fail to decode). */
export function peekId(frame: Frame): number | null {
  peeking = true;
  try {
    const env = unpackr.unpack(frame) as { id?: unknown } | null;
    return typeof env?.id === "number" ? env.id : null;
  } catch {
    return null;
  } finally {
    peeking = false;
  }
}

/**
 * What a message from the sidecar is, read from its envelope alone (arrays
 * and handles are not decoded): a reply to request `id`; an event (with the
 * call it names, if any); or something that names no request, which the
 * transport does not trust (`why`, and the sidecar's error when it is an
 * error reply to a request whose id it could not read).
 */
// --- coalesced messages (docs/protocol.md "Coalesced messages") ---------------------------------
// Several requests (or replies) in one message: its first frame is exactly the
// map {batch: [frames of part 1, frames of part 2, ...]}, which msgpack
// starts with these 7 bytes; the parts' frames follow in order.
const BATCH_PREFIX = Buffer.from([0x81, 0xa5, 0x62, 0x61, 0x74, 0x63, 0x68]);

/** Whether a message's first frame is a coalesced message's header (an envelope never is). */
export function isBatch(frame: Frame): boolean {
  return frame.length > 7 && frame[0] === 0x81 && frame[1] === 0xa5 && BATCH_PREFIX.equals(frame.subarray(0, 7));
}

/** One message carrying `messages` (each one message's frames) in order. */
export function packBatch(messages: readonly Frame[][]): Frame[] {
  const counts: number[] = [];
  const frames: Frame[] = [];
  for (const m of messages) {
    counts.push(m.length);
    for (const f of m) frames.push(f);
  }
  // Written by hand: msgpackr writes every map with a 16-bit length, and the header must start with the fixmap prefix.
  return [Buffer.concat([BATCH_PREFIX, packr.pack(counts)]), ...frames];
}

/** The parts of a coalesced message, each one message's frames, in order; a ProtocolError if the header does not add up. */
export function splitBatch(frames: readonly Frame[]): Frame[][] {
  let head: unknown;
  try {
    head = innerU.unpack(frames[0]!);
  } catch (e) {
    throw new ProtocolError(`a coalesced message's header is not msgpack: ${(e as Error).message}`);
  }
  const counts = (head as { batch?: unknown } | null)?.batch;
  const n = frames.length - 1;
  if (!Array.isArray(counts) || counts.length === 0 || !counts.every((c) => Number.isSafeInteger(c) && c >= 1) || counts.reduce((a: number, c: number) => a + c, 0) !== n) {
    throw new ProtocolError(`a coalesced message's header must be {batch: [frame counts >= 1]} summing to its ${n} other frames, got ${JSON.stringify(head)?.slice(0, 80)}`);
  }
  const parts: Frame[][] = [];
  let at = 1;
  for (const c of counts as number[]) {
    parts.push(frames.slice(at, at + c));
    at += c;
  }
  return parts;
}

export type MessageKind =
  | { kind: "reply"; id: number }
  | { kind: "event"; event: string; call: number | null }
  | { kind: "unattributable"; why: string; error?: { type: string; message: string } };

export function classify(frame: Frame): MessageKind {
  peeking = true;
  let env: unknown;
  try {
    env = unpackr.unpack(frame);
  } catch (e) {
    return { kind: "unattributable", why: `a message that is not msgpack (${(e as Error).message})` };
  } finally {
    peeking = false;
  }
  if (typeof env !== "object" || env === null || Array.isArray(env)) return { kind: "unattributable", why: `a message whose envelope is a ${env === null ? "nil" : Array.isArray(env) ? "list" : typeof env}, not a map` };
  const e = env as Record<string, unknown>;
  if (typeof e.id === "number" && Number.isSafeInteger(e.id)) return { kind: "reply", id: e.id };
  if (typeof e.event === "string" && !("id" in e)) return { kind: "event", event: e.event, call: typeof e.call === "number" ? e.call : null };
  if (e.ok === false && typeof e.error === "object" && e.error !== null) {
    const err = e.error as { type?: unknown; message?: unknown };
    return { kind: "unattributable", why: "an error reply to a request whose id the sidecar could not read", error: { type: String(err.type), message: String(err.message) } };
  }
  return { kind: "unattributable", why: `a message with neither a request id nor an event (keys: ${Object.keys(e).slice(0, 8).join(", ") || "none"})` };
}

const RESENT = Buffer.concat([Buffer.from([0xa6]), Buffer.from("resent"), Buffer.from([0xc3])]);

/**
 * The same request envelope with `resent: true` added (one more map entry,
 * written after the others): what the transport sends again after a
 * reconnect, so the sidecar answers it from its memory if it ran it already.
 */
export function markResent(frame: Frame): Frame {
  const b0 = frame[0]!;
  let head: Buffer;
  let body: Buffer;
  if (b0 >= 0x80 && b0 < 0x8f) {
    head = Buffer.from([b0 + 1]);
    body = frame.subarray(1);
  } else if (b0 === 0x8f) {
    head = Buffer.from([0xde, 0x00, 0x10]);
    body = frame.subarray(1);
  } else if (b0 === 0xde && frame.readUInt16BE(1) < 0xffff) {
    head = Buffer.alloc(3);
    head[0] = 0xde;
    head.writeUInt16BE(frame.readUInt16BE(1) + 1, 1);
    body = frame.subarray(3);
  } else if (b0 === 0xdf) {
    head = Buffer.alloc(5);
    head[0] = 0xdf;
    head.writeUInt32BE(frame.readUInt32BE(1) + 1, 1);
    body = frame.subarray(5);
  } else {
    throw new ProtocolError(`cannot mark an envelope that is not a msgpack map (first byte 0x${b0.toString(16)})`);
  }
  return Buffer.concat([head, body, RESENT]);
}

/** The handshake sample; python/jaxbridge_sidecar/sample.py builds the same value. */
export function handshakeSample(): Record<string, unknown> {
  const bf16 = new Uint16Array([0x3f80, 0xc020]); // 1.0, -2.5
  return {
    f32: new NDArray(new Float32Array([1.5, -0, Infinity]), [3], "float32"),
    i64: new NDArray(new BigInt64Array([-(2n ** 62n), 2n ** 53n + 1n]), [2], "int64"),
    u64: new NDArray(new BigUint64Array([2n ** 64n - 1n]), [1], "uint64"),
    bf16: new NDArray(bf16, [2], "bfloat16"),
    c64: new NDArray(new Float32Array([1, 2]), [1], "complex64"),
    b: new NDArray(new Uint8Array([1, 0]), [2], "bool"),
    empty: new NDArray(new Float64Array(0), [0, 3], "float64"),
    scalar: new NDArray(new Int8Array([7]), [], "int8"),
    nested: [1, "two", null, true, 2.5],
  };
}

/** Bit-for-bit equality of two wire values (used by the handshake). */
export function sameValue(a: unknown, b: unknown): boolean {
  if (a instanceof NDArray || b instanceof NDArray) {
    if (!(a instanceof NDArray && b instanceof NDArray)) return false;
    if (a.dtype !== b.dtype || a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) return false;
    return Buffer.compare(Buffer.from(a.bytes()), Buffer.from(b.bytes())) === 0;
  }
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => sameValue(x, b[i]));
  if (a !== null && typeof a === "object") {
    if (b === null || typeof b !== "object" || Array.isArray(b)) return false;
    const ka = Object.keys(a).sort();
    const kb = Object.keys(b).sort();
    return ka.length === kb.length && ka.every((k, i) => k === kb[i] && sameValue((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
  }
  return Object.is(a, b) || a === b;
}
