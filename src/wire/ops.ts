/**
 * The ops of docs/protocol.md as types: for each op, the fields of its
 * request and the `result` of its reply. Message types only, as comlink's
 * protocol.ts holds only its message types; `Session.request<Op>` is typed
 * by this table, so a caller neither builds an untyped envelope nor casts
 * what comes back. The one value here, `OPS`, is the op list derived from
 * the table, which the doc test compares with docs/protocol.md and with the
 * sidecar's dispatch table.
 *
 * Arrays in these types are what the codec (protocol.ts) makes of them:
 * `NDArray` for array values (trailing frames), `DeviceArray` for handles in
 * replies, `HandleRef` for a handle named by id, `PyRef` and `RemoteModule`
 * for Python objects.
 */
import type { DeviceArray } from "../values/device-array.js";
import type { DType } from "../values/dtype.js";
import type { NDArray } from "../values/ndarray.js";
import type { PyRef, RemoteModule } from "../values/remote.js";
import type { WireSharding } from "../values/sharding.js";
import type { HandleRef } from "./protocol.js";

export type { WireLayout, WireMesh, WireShard, WireSharding, WireSpec } from "../values/sharding.js";

/** One device in the `hello` reply. */
export interface DeviceInfo {
  /** JAX's device id: global in a multi-process job, and what meshes and shards name. */
  id: number;
  platform: string;
  kind: string;
  str: string;
  /** The JAX process that owns the device (0 in a single-process job; absent from older sidecars). */
  process_index?: number;
}

/** What the sidecar reports in the handshake (the `hello` reply without its echoed sample). */
export interface SidecarInfo {
  protocol: number;
  server: string;
  python: string;
  jax: string;
  jaxlib: string;
  backend: string;
  devices: DeviceInfo[];
  x64: boolean;
  /** This process's place in a multi-process JAX job (`serve --coordinator`): index 0 of 1 alone; absent from older sidecars. */
  process?: { index: number; count: number };
  instance: string;
  pid: number;
  max_message_bytes: number;
  max_frame_bytes: number;
  /** What the sidecar accepts (docs/protocol.md, "Limits"), with the `serve` options that raise each. */
  limits: SidecarLimits;
  /** Seconds a silent session is kept (the client pings to renew it); null: forever. */
  lease_seconds: number | null;
  /** The instance this sidecar replaced under its supervisor, and why that one ended. */
  restarted: { instance: string; cause: string } | null;
  /** With `resume` in the request: whether this session was found as it was left. */
  resumed: boolean;
}

/** The sizes a sidecar accepts (`hello`'s `limits`). */
export interface SidecarLimits {
  max_message_bytes: number;
  max_frames: number;
  max_depth: number;
  max_recv_frame_bytes: number;
  max_array_bytes: number;
}

/** A name one level below a dotted path that `call` could reach (`list_attrs`, `import`). */
export interface AttrEntry {
  name: string;
  kind: "module" | "function" | "class" | "value";
}

/** The sidecar's counters (`stats`): this session's holdings, the whole sidecar's traffic. */
export interface SidecarStats {
  /** Arrays this session holds. */
  handles: number;
  /** Python objects this session holds (PyRefs). */
  objects: number;
  /** Bytes of this session's arrays. */
  bytes: number;
  /** Requests the sidecar served (all sessions). */
  requests: number;
  /** Callback event batches and events sent (all sessions). */
  event_batches: number;
  events: number;
  /** Sessions open on the sidecar. */
  sessions: number;
  /** The sidecar process's resident memory, in bytes (0 where unknown). */
  rss: number;
}

/** The sidecar's memory accounting (`memory`): what its handle table holds, in bytes per device, and the peak. */
export interface SidecarMemory {
  /** Array handles held (an array held under two ids counts twice here, once in the bytes). */
  arrays: number;
  /** Bytes of the distinct arrays held. */
  bytes: number;
  /** Bytes per device (the JAX device's string form); shards count on their devices. */
  devices: Record<string, number>;
  /** The highest `bytes` has been since the sidecar started. */
  peak_bytes: number;
  /** Python objects held (PyRefs). */
  objects: number;
  /** Poisoned ids held: outputs of failed requests the client has not freed yet. */
  poisoned: number;
}

/** The sidecar's program cache counters (`program_stats`): lowerings, cache hits, JAX traces. */
export interface ProgramStats {
  /** Programs held. */
  programs: number;
  /** Runs answered from the cache (no lowering). */
  hits: number;
  misses: number;
  /** Programs decoded and wrapped in jax.jit. */
  lowered: number;
  evicted: number;
  /** Times JAX traced (and so compiled) a held program. */
  traces: number;
}

/** The older form of a `device_put` mesh: sizes and names over the sidecar's first devices. */
export interface MeshSpec {
  shape: number[];
  axes: string[];
}

/** The older form of a `device_put` spec: per array axis, a mesh axis name, null (replicated), or a list of names. */
export type SpecList = (string | null | string[])[];

/** The type of one array slot: dtype and shape. */
export interface ArrayType {
  readonly dtype: DType;
  readonly shape: readonly number[];
}

/** A target template node of a `pycall` equation and of `pycall_shapes` (docs/protocol.md, "Calling Python from a program"). */
export type TemplateNode =
  | null
  | "array"
  | { readonly ref: number | bigint }
  | { readonly list: readonly TemplateNode[] }
  | { readonly dict: readonly (readonly [string, TemplateNode])[] }
  | { readonly module: string; readonly fields: readonly (readonly [string, TemplateNode])[] };

/** An output node: what a Python method returns, arrays in order. */
export type OutputNode =
  | null
  | "array"
  | { readonly list: readonly OutputNode[] }
  | { readonly tuple: readonly OutputNode[] }
  | { readonly dict: readonly (readonly [string, OutputNode])[] };

/** The `pycall_shapes` request: a call's templates and the types of their array slots, target first. */
export interface PyCallRequest {
  readonly target: TemplateNode;
  readonly args: readonly TemplateNode[];
  readonly method: string;
  readonly arrays: readonly ArrayType[];
}

/** The `pycall_shapes` reply: the method's output node and the type of each of its arrays. */
export interface PyCallShapes {
  readonly tree: OutputNode;
  readonly outputs: readonly { dtype: DType; shape: readonly number[]; weak: boolean }[];
}

/** A Python value a request may carry (checked by the session before it is sent). */
type Value = unknown;

/** Every op: `request` is the envelope's fields besides `id`, `op` and `free`; `reply` the `result` of an `ok` reply. */
export interface Ops {
  hello: { request: { protocol: number; client: string; sample: Record<string, unknown>; resume?: string }; reply: SidecarInfo & { sample: unknown } };
  ping: { request: Record<string, never>; reply: "pong" };
  put: { request: { value: (NDArray | DeviceArray)[]; device?: number }; reply: DeviceArray[] };
  /** With `shards`, each entry of the reply is the list of that handle's addressable shards (read it with a cast). */
  get: { request: { value: HandleRef[]; shards?: boolean }; reply: NDArray[] };
  free: { request: { handles: (number | bigint)[] }; reply: { freed: number; unknown: number[] } };
  /** Wait until the named arrays are computed (`block_until_ready`). */
  block: { request: { handles: (number | bigint)[] }; reply: null };
  /** `ready: false`: reply once the outputs are dispatched, not computed. */
  call: { request: { fn: string; args: Value[]; kwargs: Record<string, Value>; fetch: boolean; ready?: boolean }; reply: unknown };
  put_arrow: { request: { stream: NDArray; device?: number }; reply: Record<string, DeviceArray> };
  get_arrow: { request: { columns: Record<string, DeviceArray> }; reply: { stream: NDArray } };
  stats: { request: Record<string, never>; reply: SidecarStats };
  memory: { request: Record<string, never>; reply: SidecarMemory };
  /** With `out` (client-chosen ids, one per output) the outputs stay at those ids and the reply's `outputs` is null; `ready: false`: reply once the outputs are dispatched. */
  run: { request: { hash: string; program?: Uint8Array; args: (NDArray | DeviceArray)[]; fetch?: boolean; out?: number[]; ready?: boolean }; reply: { outputs: (DeviceArray | NDArray)[] | null; lowered: boolean; traced: boolean } };
  program_stats: { request: Record<string, never>; reply: ProgramStats };
  list_attrs: { request: { path: string }; reply: AttrEntry[] };
  import: { request: { module: string }; reply: AttrEntry[] };
  call_method: { request: { target: PyRef | RemoteModule; name: string; args: Value[]; kwargs: Record<string, Value>; fetch: boolean }; reply: unknown };
  pycall_shapes: { request: PyCallRequest; reply: PyCallShapes };
  fingerprint: { request: { value: Value }; reply: Uint8Array };
  serialise_leaves: { request: { value: Value }; reply: { fingerprint: Uint8Array; leaves: Uint8Array } };
  deserialise_leaves: { request: { like: Value; leaves: NDArray; fetch: boolean }; reply: unknown };
  /** One-way: the sidecar sends no reply. */
  ack: { request: { call: number; batch: number }; reply: never };
  device_put: { request: { value: (NDArray | DeviceArray)[]; sharding?: WireSharding; mesh?: MeshSpec; spec?: SpecList; global_shape?: number[] }; reply: DeviceArray[] };
  /** End this session: the sidecar frees everything it holds (answered at once). */
  close: { request: Record<string, never>; reply: { handles: number; objects: number } };
}

export type Op = keyof Ops;
export type Request<O extends Op> = Ops[O]["request"];
export type Reply<O extends Op> = Ops[O]["reply"];

// A record over every op: the compiler refuses one missing from `Ops` or one it does not know.
const EVERY_OP: { readonly [O in Op]: true } = {
  hello: true,
  ping: true,
  put: true,
  get: true,
  free: true,
  block: true,
  call: true,
  put_arrow: true,
  get_arrow: true,
  stats: true,
  memory: true,
  run: true,
  program_stats: true,
  list_attrs: true,
  import: true,
  call_method: true,
  pycall_shapes: true,
  fingerprint: true,
  serialise_leaves: true,
  deserialise_leaves: true,
  ack: true,
  device_put: true,
  close: true,
};

/** Every op of the table, in the order docs/protocol.md lists them. */
export const OPS = Object.keys(EVERY_OP) as readonly Op[];
