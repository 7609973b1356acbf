/**
 * Several sidecars driven as one multi-controller JAX job
 * (`jax.distributed`): every process must run the same programs, with the
 * same collectives, in the same order, or the job hangs or computes garbage
 * silently (gloo's all-reduce carries no tag). So a Cluster has one queue:
 * an operation goes to every process at once, and the next one starts only
 * when all processes have answered. Order is then a property of the
 * object, not of the caller's discipline.
 *
 * Faults follow JAX's model: a job does not survive the loss of a process
 * (the survivors abort on the heartbeat timeout, or at once when process 0
 * goes). When one dies, every pending operation rejects at once with a
 * ClusterProcessDiedError naming it, the other processes are stopped, and
 * the cluster refuses new work until `rebuild()` (new processes).
 */
import { createServer } from "node:net";
import { connect, type ConnectOptions, Session } from "../session/session.js";
import { DeviceArray } from "../values/device-array.js";
import { NDArray } from "../values/ndarray.js";
import { dtypeInfo } from "../values/dtype.js";
import { BridgeInputError, JaxBridgeError, SidecarDiedError } from "../values/errors.js";
import { Mesh, NamedSharding, P, type Shard, type Sharding } from "../values/sharding.js";
import { prefixLeaves } from "../values/prefix.js";
import { flatten, flattenWithPath, keystr, unflatten } from "../values/tree.js";
import { meshOver, type MakeMeshOptions } from "../session/mesh.js";
import type { DeviceInfo } from "../wire/ops.js";
import { HandleRef } from "../wire/protocol.js";
import { jit, type JitOptions } from "../trace/jit.js";
import type { Tracer } from "../trace/tracer.js";

/** The cluster can no longer run work; every operation rejects with this until `rebuild()`. */
export class ClusterBrokenError extends JaxBridgeError {
  override name = "ClusterBrokenError";
  /** The process whose failure broke the job. */
  readonly process: number;
  constructor(message: string, process: number) {
    super(message);
    this.process = process;
  }
}

/** A process of the job died (or its connection did): the job is over. */
export class ClusterProcessDiedError extends ClusterBrokenError {
  override name = "ClusterProcessDiedError";
}

/**
 * A global array of the job: one handle per process, each naming that
 * process's piece of the same `jax.Array` (global shape, sharding over the
 * job's mesh). Fetch it with `cluster.get`.
 */
export class ClusterArray {
  constructor(
    readonly cluster: Cluster,
    /** The generation of the cluster that made it; a rebuilt cluster has none of its pieces. */
    readonly generation: number,
    /** Per process, its handle (the same global array seen from there). */
    readonly parts: readonly DeviceArray[],
  ) {}

  get shape(): readonly number[] {
    return this.parts[0]!.shape;
  }

  get dtype(): DeviceArray["dtype"] {
    return this.parts[0]!.dtype;
  }

  get sharding(): Sharding {
    return this.parts[0]!.sharding;
  }

  /** Free the pieces on every process. */
  dispose(): void {
    for (const p of this.parts) p.dispose();
  }

  toString(): string {
    return `ClusterArray(${this.dtype}[${this.shape.join(", ")}], ${this.sharding})`;
  }
}

/** A pytree with its array leaves (NDArray, DeviceArray, or a traced function's Tracer results) replaced by ClusterArrays. */
export type ClusterTree<T> = T extends NDArray | DeviceArray | Tracer ? ClusterArray : T extends readonly unknown[] ? { [K in keyof T]: ClusterTree<T[K]> } : T extends object ? { [K in keyof T]: ClusterTree<T[K]> } : T;

export interface ClusterOptions {
  /**
   * How long one process's error may stand while others have not answered
   * the same operation before the job counts as out of step (ms, default
   * 10000). A death seen by the cluster (an embedded process's exit, a lost
   * connection) breaks it at once, whatever this says.
   */
  faultGraceMs?: number;
}

export interface StartClusterOptions extends Omit<ConnectOptions, "url" | "curve" | "args">, ClusterOptions {
  /** Processes in the job (default 2). */
  numProcesses?: number;
  /** CPU devices per process (`serve --num-cpu-devices`); accelerators bring their own. */
  numCpuDevices?: number;
  /** Seconds without a heartbeat before JAX declares a process dead (`serve --heartbeat-timeout`; default 10 here, JAX's own is 100). */
  heartbeatTimeoutS?: number;
  /** More arguments for every process's `serve`. */
  args?: string[];
}

/** Where a process's handle came from, for error messages. */
interface Member {
  session: Session;
  describe: string;
}

/** A free TCP port on loopback for the coordination service (the OS picks it; we release it just before process 0 binds it). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Start an N-process job on this machine (loopback; for tests, notebooks
 * and trying a multi-host program on one host): N embedded sidecars that
 * join one `jax.distributed` job, process 0 running the coordination service.
 */
export async function startCluster(opts: StartClusterOptions = {}): Promise<Cluster> {
  const c = new Cluster(async () => launch(opts), opts);
  await c.rebuild();
  return c;
}

/**
 * Drive sidecars already started as one job (`serve --coordinator HOST:PORT
 * --num-processes N --process-id I`, one per host): `urls[i]` must be the
 * sidecar of process i. `rebuild()` reconnects to the same urls (after
 * whatever restarts the processes, e.g. the supervisor or Compose, has).
 */
export async function connectCluster(urls: readonly string[], opts: Omit<ConnectOptions, "url"> & ClusterOptions = {}): Promise<Cluster> {
  const c = new Cluster(async () => Promise.all(urls.map((url) => connect({ ...opts, url, makeDefault: false }))), opts);
  await c.rebuild();
  return c;
}

async function launch(opts: StartClusterOptions): Promise<Session[]> {
  const n = opts.numProcesses ?? 2;
  if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`numProcesses must be a positive integer, got ${n}`);
  const port = await freePort();
  const hb = opts.heartbeatTimeoutS ?? 10;
  const started = await Promise.allSettled(
    Array.from({ length: n }, (_, i) =>
      connect({
        ...opts,
        makeDefault: false,
        args: ["--coordinator", `127.0.0.1:${port}`, "--num-processes", String(n), "--process-id", String(i), "--heartbeat-timeout", String(hb), ...(opts.args ?? [])],
      }),
    ),
  );
  const failed = started.find((s) => s.status === "rejected");
  if (failed) {
    // One process that cannot start leaves the others waiting in initialize(): stop them all.
    await Promise.all(started.map((s) => (s.status === "fulfilled" ? s.value.close() : undefined)));
    throw failed.reason;
  }
  return started.map((s) => (s as PromiseFulfilledResult<Session>).value);
}

export class Cluster {
  #members: Member[] = [];
  #generation = 0;
  #queue: Promise<unknown> = Promise.resolve();
  #broken: ClusterBrokenError | null = null;
  #closed = false;
  /** Rejecters of the operations in flight (at most one: the queue), so a death rejects them at once. */
  readonly #pending = new Set<(e: Error) => void>();
  readonly #faultGraceMs: number;
  readonly #gathers = new Map<string, (x: ClusterArray) => Promise<unknown>>();

  constructor(
    private readonly start: () => Promise<Session[]>,
    opts: ClusterOptions = {},
  ) {
    this.#faultGraceMs = opts.faultGraceMs ?? 10_000;
  }

  /** The processes' sessions, process i at index i. */
  get processes(): readonly Session[] {
    return this.#members.map((m) => m.session);
  }

  get size(): number {
    return this.#members.length;
  }

  /** Why the cluster refuses work, or null while it is usable. */
  get broken(): ClusterBrokenError | null {
    return this.#broken;
  }

  /** Every device of the job (JAX's global `jax.devices()`: ids are global and need not be dense). */
  get devices(): readonly DeviceInfo[] {
    return this.#member(0).session.info.devices;
  }

  /** A mesh over the job's devices, first ones first (process 0's, then process 1's, ...), as `jax.make_mesh` on CPU and GPU. */
  makeMesh(axisSizes: readonly number[], axisNames: readonly string[], opts: MakeMeshOptions = {}): Mesh {
    return meshOver(this.devices, axisSizes, axisNames, opts);
  }

  /**
   * (Re)start the job: stop whatever processes are left and start or
   * reconnect to a fresh set. Arrays of the earlier job are gone.
   */
  async rebuild(): Promise<void> {
    if (this.#closed) throw new JaxBridgeError("the cluster is closed");
    await this.#stopAll();
    const sessions = await this.start();
    const wrong = sessions.findIndex((s, i) => s.info.process !== undefined && (s.info.process.index !== i || s.info.process.count !== sessions.length));
    if (wrong >= 0) {
      const p = sessions[wrong]!.info.process!;
      await Promise.all(sessions.map((s) => s.close()));
      throw new JaxBridgeError(`sidecar ${wrong} (${sessions[wrong]!.url}) is process ${p.index} of ${p.count}, but the cluster was given it as process ${wrong} of ${sessions.length}: give the urls in process order`);
    }
    this.#generation++;
    this.#broken = null;
    this.#gathers.clear();
    this.#members = sessions.map((session, i) => ({ session, describe: describeMember(session, i, sessions.length) }));
    sessions.forEach((s, i) => {
      const gen = this.#generation;
      void s.sidecar?.exitDescription.then((how) => {
        if (gen === this.#generation && !this.#closed) this.#fail(i, `${how}`);
      });
    });
  }

  /** Stop every process and refuse further work. Always settles. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#broken ??= new ClusterBrokenError("the cluster is closed", -1);
    for (const reject of [...this.#pending]) reject(this.#broken);
    await this.#stopAll();
  }

  /**
   * Place a host array (or the array leaves of a tree) as a global array
   * with `sharding` (a NamedSharding, or a tree prefix of them): each
   * process is sent only the block its own devices hold
   * (`jax.make_array_from_process_local_data`).
   */
  async devicePut<T>(tree: T, sharding: unknown): Promise<ClusterTree<T>> {
    const { leaves, treedef } = flattenWithPath(tree);
    const per = prefixLeaves(sharding, tree, (x): x is NamedSharding => x instanceof NamedSharding, "sharding", "NamedSharding");
    const slots: number[] = [];
    const puts: { global: NDArray; sharding: NamedSharding }[] = [];
    leaves.forEach(({ path, value }, i) => {
      if (value instanceof DeviceArray) throw new BridgeInputError("cluster.devicePut takes host arrays (a DeviceArray belongs to one process)", `tree${keystr(path)}`);
      if (!(value instanceof NDArray)) return;
      const s = per[i];
      if (!(s instanceof NamedSharding)) throw new BridgeInputError("no NamedSharding for this array", `tree${keystr(path)}`);
      s.shardShape(value.shape);
      slots.push(i);
      puts.push({ global: value, sharding: s });
    });
    const placed = await this.#each("device_put", (session, i) =>
      Promise.all(puts.map(({ global, sharding: s }) => this.#putSlab(session, slab(global, processBox(s, global.shape, this.devices, i)), s, global.shape))),
    );
    const out: unknown[] = leaves.map((l) => l.value);
    slots.forEach((slot, k) => (out[slot] = new ClusterArray(this, this.#generation, placed.map((parts) => parts[k]!))));
    return unflatten(treedef, out) as ClusterTree<T>;
  }

  /**
   * Place a global array from per-process data: `local[i]` is process i's
   * block (the rows its devices hold for a batch-sharded array; the whole
   * array for a replicated one), `globalShape` the whole array's shape.
   */
  async devicePutLocal(local: readonly NDArray[], sharding: NamedSharding, globalShape: readonly number[]): Promise<ClusterArray> {
    if (local.length !== this.size) throw new BridgeInputError(`devicePutLocal takes one block per process: ${this.size}, got ${local.length}`);
    sharding.shardShape(globalShape);
    local.forEach((a, i) => {
      const box = processBox(sharding, globalShape, this.devices, i);
      const want = box.map(([a0, b0]) => b0 - a0);
      if (a.shape.length !== want.length || a.shape.some((d, k) => d !== want[k])) {
        throw new BridgeInputError(`process ${i}'s devices hold a block of shape [${want.join(", ")}] of the global [${globalShape.join(", ")}] under ${sharding}, got [${a.shape.join(", ")}]`, `local[${i}]`);
      }
    });
    const parts = await this.#each("device_put", (session, i) => this.#putSlab(session, local[i]!, sharding, globalShape));
    return new ClusterArray(this, this.#generation, parts);
  }

  async #putSlab(session: Session, block: NDArray, sharding: NamedSharding, globalShape: readonly number[]): Promise<DeviceArray> {
    const [d] = await session.request("device_put", { value: [block], sharding: sharding.toWire(), global_shape: [...globalShape] });
    return d!;
  }

  /**
   * `jit(fn, opts)` for the job: traced once, the same program is run by
   * every process, each with its own handles of the ClusterArray
   * arguments. Resolves to `fn`'s output tree with ClusterArrays for array
   * leaves. Host arrays are not arguments here: place them with
   * `devicePut` (each process must see the same global array).
   */
  jit<A extends unknown[], R>(fn: (...args: A) => R, opts: Omit<JitOptions, "session" | "fetch"> = {}): (...args: { [K in keyof A]: unknown }) => Promise<ClusterTree<R>> {
    const jitted = jit(fn, opts);
    const name = opts.name ?? (fn.name ? `jit(${fn.name})` : "jit(fn)");
    return async (...args) => {
      const { leaves, treedef } = flattenWithPath(args);
      for (const { path, value } of leaves) {
        const where = `args${keystr(path)}`;
        if (value instanceof NDArray || value instanceof DeviceArray) throw new BridgeInputError(`${name} on a cluster takes ClusterArrays: place host arrays with cluster.devicePut first`, where);
        if (value instanceof ClusterArray) this.#checkOwned(value, where);
      }
      const outs = await this.#each(name, (session, i) => {
        const mine = unflatten(treedef, leaves.map(({ value }) => (value instanceof ClusterArray ? value.parts[i] : value))) as unknown[];
        return (jitted.withOptions({ session }) as unknown as (...a: unknown[]) => Promise<unknown>)(...mine);
      });
      const flat = outs.map((o) => flatten(o));
      const joined = flat[0]!.leaves.map((leaf, k) => (leaf instanceof DeviceArray ? new ClusterArray(this, this.#generation, flat.map((f) => f.leaves[k] as DeviceArray)) : leaf));
      return unflatten(flat[0]!.treedef, joined) as ClusterTree<R>;
    };
  }

  /**
   * Fetch the ClusterArray leaves of a tree as host arrays (global
   * values). A replicated array is read from process 0; any other is first
   * gathered to replicated by a program every process runs (an all-gather,
   * as `multihost_utils.process_allgather` does).
   */
  async get<T>(tree: T): Promise<unknown> {
    const { leaves, treedef } = flattenWithPath(tree);
    const out: unknown[] = [];
    for (const { path, value } of leaves) {
      if (!(value instanceof ClusterArray)) {
        out.push(value);
        continue;
      }
      this.#checkOwned(value, `tree${keystr(path)}`);
      const s = value.sharding;
      if (s.isFullyReplicated) {
        out.push(await this.#fetch0(value));
        continue;
      }
      if (!(s instanceof NamedSharding)) throw new BridgeInputError(`cluster.get gathers NamedSharding arrays; this one is ${s}`, `tree${keystr(path)}`);
      const gathered = (await this.#gather(s.mesh)(value)) as ClusterArray;
      try {
        out.push(await this.#fetch0(gathered));
      } finally {
        gathered.dispose();
      }
    }
    return unflatten(treedef, out);
  }

  /**
   * Every shard of a ClusterArray, shard by shard, without a collective:
   * each process sends the pieces its own devices hold (device id, the
   * global slice, the replica id, the data), process 0's first.
   */
  async shards(x: ClusterArray): Promise<(Shard & { data: NDArray })[]> {
    this.#checkOwned(x, "x");
    const per = await this.#each("get", async (session, i) => {
      const [pieces] = (await session.request("get", { value: [new HandleRef(x.parts[i]!.handle)], shards: true })) as unknown as NDArray[][];
      return x.parts[i]!.addressableShards.map((s, k) => ({ ...s, data: pieces![k]! }));
    });
    return per.flat();
  }

  #fetch0(x: ClusterArray): Promise<NDArray> {
    return this.#each("get", (session, i) => (i === 0 ? session.fetch(x.parts[0]!) : Promise.resolve(null))).then((r) => r[0]!);
  }

  #gather(mesh: Mesh): (x: ClusterArray) => Promise<unknown> {
    const key = JSON.stringify(mesh.toWire());
    let g = this.#gathers.get(key);
    if (!g) {
      g = this.jit((x: unknown) => x, { name: "gather", outShardings: new NamedSharding(mesh, P()) });
      this.#gathers.set(key, g);
    }
    return g;
  }

  #checkOwned(x: ClusterArray, where: string): void {
    if (x.cluster !== this) throw new BridgeInputError(`${x} belongs to another cluster`, where);
    if (x.generation !== this.#generation) throw new BridgeInputError(`${x} was made before the cluster was rebuilt: its processes are gone`, where);
  }

  #member(i: number): Member {
    const m = this.#members[i];
    if (!m) throw new JaxBridgeError("the cluster has no processes (not started, or closed)");
    return m;
  }

  /**
   * The one queue: run `per` on every process at once, after the previous
   * operation has settled on all of them. Rejects with the first error when
   * every process failed alike (the job is still in step: a bad program
   * fails everywhere), and breaks the cluster when processes disagree or
   * one dies.
   */
  #each<T>(op: string, per: (session: Session, i: number) => Promise<T>): Promise<T[]> {
    const run = () => this.#runOnAll(op, per);
    const result = this.#queue.then(run, run);
    this.#queue = result.catch(() => undefined);
    return result;
  }

  #runOnAll<T>(op: string, per: (session: Session, i: number) => Promise<T>): Promise<T[]> {
    if (this.#broken) return Promise.reject(this.#broken);
    const members = this.#members;
    const gen = this.#generation;
    return new Promise<T[]>((resolve, reject) => {
      const results: T[] = new Array(members.length);
      const errors: (unknown | undefined)[] = new Array(members.length);
      const answered: boolean[] = members.map(() => false);
      let left = members.length;
      let graceTimer: NodeJS.Timeout | undefined;
      let done = false;
      const settle = (f: () => void) => {
        if (done) return;
        done = true;
        clearTimeout(graceTimer);
        this.#pending.delete(rejectNow);
        f();
      };
      const rejectNow = (e: Error) => settle(() => reject(e));
      this.#pending.add(rejectNow);
      const finish = () => {
        const failed = errors.flatMap((e, i) => (e === undefined ? [] : [i]));
        if (failed.length === 0) return settle(() => resolve(results));
        const first = errors[failed[0]!] as Error;
        const alike = failed.length === members.length && failed.every((i) => sameError(errors[i], first));
        if (alike) return settle(() => reject(first));
        this.#fail(failed[0]!, `failed ${op} alone (${first?.name}: ${firstLine(first)}) while ${members.length - failed.length} other process(es) succeeded: the job is out of step`, false);
      };
      members.forEach((m, i) => {
        let p: Promise<T>;
        try {
          p = per(m.session, i);
        } catch (e) {
          p = Promise.reject(e);
        }
        p.then(
          (v) => {
            results[i] = v;
            answered[i] = true;
            if (--left === 0) finish();
          },
          (e: unknown) => {
            errors[i] = e ?? new Error("rejected");
            answered[i] = true;
            if (gen !== this.#generation) return;
            if (e instanceof SidecarDiedError) return this.#fail(i, `lost its sidecar: ${firstLine(e)}`);
            if (--left === 0) return finish();
            // Others are still running this operation: if they do not answer soon, the job is out of step, and the
            // suspect is a silent process (dead without our noticing, or hung in a collective), not the one that spoke.
            graceTimer ??= setTimeout(() => {
              const silent = answered.indexOf(false);
              this.#fail(silent, `has not answered ${op} within ${this.#faultGraceMs} ms of process ${i} failing it (${(e as Error)?.name}: ${firstLine(e)})`, false);
            }, this.#faultGraceMs);
          },
        );
      });
    });
  }

  /** Break the cluster: reject what is pending, stop every process. The first fault wins. */
  #fail(process: number, what: string, died = true): void {
    if (this.#broken) return;
    const m = this.#members[process];
    const who = m ? m.describe : `process ${process}`;
    const Ctor = died ? ClusterProcessDiedError : ClusterBrokenError;
    this.#broken = new Ctor(`${who} ${what}; the job cannot continue (JAX jobs do not survive a lost process): pending calls were rejected, the other processes stopped, and the cluster refuses work until cluster.rebuild()`, process);
    for (const reject of [...this.#pending]) reject(this.#broken);
    void this.#stopAll();
  }

  async #stopAll(): Promise<void> {
    const members = this.#members;
    // Survivors would abort within a heartbeat anyway, and one may be stuck in a collective: kill embedded ones outright.
    for (const m of members) m.session.sidecar?.kill();
    await Promise.all(members.map((m) => m.session.close()));
  }
}

function describeMember(session: Session, i: number, n: number): string {
  const where = session.sidecar ? `pid ${session.sidecar.pid}` : session.url;
  return `process ${i} of ${n} (${where})`;
}

const firstLine = (e: unknown): string => String((e as Error)?.message ?? e).split("\n")[0]!.slice(0, 300);

function sameError(a: unknown, b: unknown): boolean {
  return a instanceof Error && b instanceof Error && a.name === b.name && a.message === b.message;
}

/** The block of the global array that process `i`'s devices hold: per axis, from the lowest start to the highest stop of its shards. */
export function processBox(s: NamedSharding, shape: readonly number[], devices: readonly DeviceInfo[], i: number): [number, number][] {
  const mine = new Set(devices.filter((d) => (d.process_index ?? 0) === i).map((d) => d.id));
  const shards = s.shards(shape).filter((sh) => mine.has(sh.device));
  if (shards.length === 0) throw new BridgeInputError(`${s} puts nothing on process ${i}: every process of the job must hold part of a global array`);
  return shape.map((_, k) => [Math.min(...shards.map((sh) => sh.index[k]![0])), Math.max(...shards.map((sh) => sh.index[k]![1]))]);
}

/** A C-order copy of the box `[start, stop)` per axis of `a`. */
export function slab(a: NDArray, box: readonly (readonly [number, number])[]): NDArray {
  if (box.every(([s, e], k) => s === 0 && e === a.shape[k])) return a;
  const item = dtypeInfo(a.dtype).itemsize;
  const src = a.bytes();
  const outShape = box.map(([s, e]) => e - s);
  const out = new Uint8Array(outShape.reduce((x, y) => x * y, 1) * item);
  const strides = a.shape.map((_, k) => a.shape.slice(k + 1).reduce((x, y) => x * y, 1) * item);
  let o = 0;
  const last = box.length - 1;
  const walk = (k: number, offset: number) => {
    if (k === last) {
      const start = offset + box[k]![0] * strides[k]!;
      const len = (box[k]![1] - box[k]![0]) * strides[k]!;
      out.set(src.subarray(start, start + len), o);
      o += len;
      return;
    }
    for (let j = box[k]![0]; j < box[k]![1]; j++) walk(k + 1, offset + j * strides[k]!);
  };
  walk(0, 0);
  const Ctor = dtypeInfo(a.dtype).ctor as unknown as new (b: ArrayBuffer) => NDArray["data"];
  return new NDArray(new Ctor(out.buffer), outShape, a.dtype);
}
