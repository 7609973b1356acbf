/**
 * A session with one sidecar: the handshake, put/get/call/free, handle
 * ownership, and the embedded sidecar's lifetime. Pytrees are split here:
 * only array leaves cross the wire; static leaves stay in TypeScript.
 */
import { DeviceArray, type HandleOwner } from "../values/device-array.js";
import { NDArray } from "../values/ndarray.js";
import { describe } from "../values/describe.js";
import { BridgeInputError, JaxBridgeError, ProtocolError, SidecarDiedError, SidecarRestartedError } from "../values/errors.js";
import { remoteError } from "../wire/remote-error.js";
import { type Frame, HandleRef, PROTOCOL_VERSION, classify, decode, encode, handshakeSample, peekId, sameValue, wireId } from "../wire/protocol.js";
import { CallEvents, countEvents, type BatchEntry, type CallbackStats, type EventSink, type HostCallback } from "./callback-events.js";
import { AbortedError, DeadlineError } from "../values/errors.js";
import { type CurveClientKeys, type RequestOptions, Transport } from "../wire/transport.js";
import { curveFromEnv } from "../wire/keys.js";
import { EmbeddedSidecar, type SpawnOptions } from "../wire/sidecar-process.js";
import { flatten, flattenWithPath, keystr, unflatten } from "../values/tree.js";
import { PyRef, RemoteModule } from "../values/remote.js";
import { pyProxy, type PyProxy } from "./py-proxy.js";
import { type ArrayScope, keep, scope, tidy } from "./memory.js";
import type { AttrEntry, MeshSpec, Op, Reply, Request, SidecarInfo, SidecarMemory, SidecarStats, SpecList } from "../wire/ops.js";
import { type Mesh, NamedSharding } from "../values/sharding.js";
import { legacySharding, type MakeMeshOptions, meshOver } from "./mesh.js";

export type { RequestOptions } from "../wire/transport.js";
export type { DeviceInfo, SidecarInfo, SidecarMemory } from "../wire/ops.js";
export type { PyProxy } from "./py-proxy.js";
export type { CallbackStats } from "./callback-events.js";

/** Options of a request whose op may produce callback events (`run`). */
export interface EventRequestOptions extends RequestOptions {
  /** The program's host callbacks, by the ids its `callback` equations name. */
  callbacks?: readonly HostCallback[] | undefined;
}

/** The older `devicePut` form: a mesh over the sidecar's first devices, and per array axis a mesh axis name, null, or a list of names. Prefer a `NamedSharding`. */
export interface ShardingSpec {
  mesh: MeshSpec;
  spec: SpecList;
}

export interface ConnectOptions extends SpawnOptions {
  /** A sidecar started elsewhere (`tcp://host:5555`); without it an embedded sidecar is spawned. */
  url?: string;
  curve?: CurveClientKeys;
  /** Requests in flight at once (default 1024); more wait in TypeScript. */
  maxInFlight?: number;
  /** Send requests queued behind a send in one message (default true; docs/protocol.md "Coalesced messages"). */
  coalesce?: boolean;
  /** How long the handshake may take (ms, default 30000; the embedded start has its own limit). */
  handshakeTimeoutMs?: number;
  /**
   * How long the sidecar may be out of reach before this session gives up on
   * it (ms; default 30000 for tcp://, 120000 for ipc://): a dropped connection
   * that comes back sooner resumes the session with its arrays intact, and
   * calls in flight complete (docs/protocol.md, "Sessions").
   */
  reconnectGraceMs?: number;
  /** ZMTP heartbeat interval, and how often a silent sidecar is pinged while calls wait (ms, default 1000; 0 disables both). */
  heartbeatMs?: number;
  /** After a message that names no request, how long well-formed replies still settle their calls before the session fails with ProtocolError (ms, default 2000). */
  protocolGraceMs?: number;
  /** Deadline applied to calls that give none (ms; default none). */
  defaultTimeoutMs?: number;
  signal?: AbortSignal;
  /** Make this session the default one if there is none open (default true; a cluster's processes are not). */
  makeDefault?: boolean;
}

export interface CallOptions extends RequestOptions {
  args?: unknown[];
  kwargs?: Record<string, unknown>;
  /** Return host arrays instead of device handles. */
  fetch?: boolean;
}

/** Marks keyword arguments as the last argument of `session.call`. */
export class Kwargs {
  constructor(readonly values: Record<string, unknown>) {}
}
/** How this client names itself in `hello`. */
const CLIENT = "jaxbridge-ts 0.1.0";
/** Puts at least this large send queued frees in a message of their own first (see put). */
const LARGE_PUT_BYTES = 1 << 20;

export function kw(values: Record<string, unknown>): Kwargs {
  return new Kwargs(values);
}

/** A pytree with its NDArray leaves replaced by DeviceArrays (and vice versa for `HostTree`). */
export type DeviceTree<T> = T extends NDArray ? DeviceArray : T extends readonly unknown[] ? { [K in keyof T]: DeviceTree<T[K]> } : T extends object ? { [K in keyof T]: DeviceTree<T[K]> } : T;
export type HostTree<T> = T extends DeviceArray ? NDArray : T extends readonly unknown[] ? { [K in keyof T]: HostTree<T[K]> } : T extends object ? { [K in keyof T]: HostTree<T[K]> } : T;

/**
 * Sees each request a session is about to send (frees excepted): it may
 * return a signal that also abandons the request, and is told when the
 * request settled. The REPL installs one so that Ctrl-C abandons the calls
 * of the line being evaluated, on every session (src/repl/README.md).
 */
export type RequestHook = (op: Op, session: Session) => { signal: AbortSignal; settled(): void } | undefined;

/** A request the client gave up on (Ctrl-C, a deadline) whose reply has not arrived: the sidecar is still on it, or has it queued. */
export interface AbandonedCall {
  readonly id: number;
  /** What it is: `call jax.numpy.linalg.svd`, `program` (a `run`: a jitted function or an eager op), or the op. */
  readonly what: string;
  /** When it was sent (Date.now()). */
  readonly sentAt: number;
}

const requestHooks = new Set<RequestHook>();

let defaultSession: Session | null = null;

/** The session that free functions use: the first one connected and still open. */
export function getDefaultSession(): Session {
  if (defaultSession === null || defaultSession.closed) {
    throw new JaxBridgeError("no open jaxbridge session: call `await connect()` first (or pass a session explicitly)");
  }
  return defaultSession;
}

/** `makeMesh(axisSizes, axisNames)`: a mesh over the default session's devices (or `opts.session`'s); see `Session.makeMesh`. */
export function makeMesh(axisSizes: readonly number[], axisNames: readonly string[], opts: MakeMeshOptions & { session?: Session } = {}): Mesh {
  return (opts.session ?? getDefaultSession()).makeMesh(axisSizes, axisNames, opts);
}

/**
 * The session a top-level call runs on: the explicit one, else the one that
 * owns the DeviceArrays among `trees`' leaves, else the default session.
 * DeviceArrays of another session than the one chosen are an error naming
 * their path (a handle only means something to the sidecar that made it).
 */
export function resolveSession(op: string, trees: readonly unknown[], explicit?: Session): Session {
  let chosen: Session | undefined = explicit;
  let firstPath = "";
  for (const [t, tree] of trees.entries()) {
    for (const { path, value } of flattenWithPath(tree).leaves) {
      if (!(value instanceof DeviceArray)) continue;
      const where = `${trees.length > 1 ? `args[${t}]` : "tree"}${keystr(path)}`;
      if (value.disposed) throw new BridgeInputError(`${op}: ${value.toString()} was disposed`, where);
      const owner = value.owner;
      if (chosen === undefined) {
        if (!(owner instanceof Session)) throw new BridgeInputError(`${op}: ${value.toString()} is not owned by a Session`, where);
        chosen = owner;
        firstPath = where;
      } else if (owner !== chosen) {
        throw new BridgeInputError(
          `${op}: ${value.toString()} belongs to sidecar ${owner.instance || "(closed)"}, but this call runs on sidecar ${chosen.instance || "(closed)"}` +
            (explicit ? " (the session passed explicitly)" : ` (which owns ${firstPath})`) +
            "; a handle only exists in the sidecar that made it: fetch it with toHost() and pass the NDArray instead",
          where,
        );
      }
    }
  }
  return chosen ?? getDefaultSession();
}

/**
 * Connect to a sidecar. Without `url`, spawn the embedded one from the
 * project's Python environment on a private ipc:// socket.
 */
export async function connect(opts: ConnectOptions = {}): Promise<Session> {
  let sidecar: EmbeddedSidecar | undefined;
  let url = opts.url;
  if (url === undefined) {
    sidecar = await EmbeddedSidecar.start(opts);
    url = sidecar.url;
  }
  // A remote sidecar's CURVE keys: given, or from JAXBRIDGE_CURVE_SERVER_KEY / JAXBRIDGE_CURVE_CLIENT_KEY.
  const curve = opts.curve ?? (sidecar === undefined ? curveFromEnv() : undefined);
  const transport = new Transport({
    url,
    ...(opts.maxInFlight ? { maxInFlight: opts.maxInFlight } : {}),
    ...(opts.coalesce === false ? { coalesce: false } : {}),
    ...(curve ? { curve } : {}),
    ...(opts.reconnectGraceMs !== undefined ? { reconnectGraceMs: opts.reconnectGraceMs } : {}),
    ...(opts.heartbeatMs !== undefined ? { heartbeatMs: opts.heartbeatMs } : {}),
    ...(opts.protocolGraceMs !== undefined ? { protocolGraceMs: opts.protocolGraceMs } : {}),
  });
  const session = new Session(transport, sidecar, opts.defaultTimeoutMs);
  try {
    await session.handshake({ timeoutMs: opts.handshakeTimeoutMs ?? 30_000, signal: opts.signal });
  } catch (err) {
    await session.close();
    throw err;
  }
  if (opts.makeDefault !== false && (defaultSession === null || defaultSession.closed)) defaultSession = session;
  return session;
}

export class Session implements HandleOwner, EventSink {
  /** Callback event counters (a 1e5-step scan with a per-step callback is a few hundred batches, not 1e5 messages). */
  readonly callbackStats: CallbackStats = { batches: 0, events: 0, dropped: 0 };
  /** Messages logged once each (unknown calls, unknown callback ids). */
  readonly eventWarnings: string[] = [];
  private readonly eventRoutes = new Map<number, CallEvents>();
  private readonly liveCalls = new Set<(err: Error) => void>();
  private readonly warned = new Set<string>();
  /** One live PyRef per sidecar object id; extra copies the sidecar sends are released at once. */
  private readonly pyrefs = new Map<number, WeakRef<PyRef>>();
  readonly url: string;
  /** The embedded sidecar process, when this session spawned one. */
  readonly sidecar: EmbeddedSidecar | undefined;
  private readonly transport: Transport;
  private readonly defaultTimeoutMs: number | undefined;
  private _info: SidecarInfo | null = null;
  private _closed = false;
  private closing: Promise<void> | undefined;
  private frees: number[] = [];
  /** Frees taken off `frees` so far (sent, or riding on a request being sent). */
  private freesTaken = 0;
  private freeScheduled = false;
  /** When this session last sent a request (the sidecar's idle lease counts from it). */
  private lastSent = Date.now();
  private keepalive: NodeJS.Timeout | undefined;
  private pinging = false;

  constructor(transport: Transport, sidecar: EmbeddedSidecar | undefined, defaultTimeoutMs?: number) {
    this.transport = transport;
    this.url = transport.url;
    this.sidecar = sidecar;
    this.defaultTimeoutMs = defaultTimeoutMs;
    transport.onAbandoned = (frames) => this.freeAbandoned(frames);
    transport.onEvent = (frames) => this.onEvent(frames);
    transport.onDeath = (err) => {
      if (this.keepalive) clearInterval(this.keepalive);
      for (const kill of [...this.liveCalls]) kill(err);
    };
    transport.onResume = () => this.resume();
    transport.onHeartbeat = () => this.heartbeat();
    if (sidecar) {
      void sidecar.exitDescription.then((how) => {
        const tail = sidecar.stderr.trim().split("\n").slice(-15).join("\n");
        transport.fail(new SidecarDiedError(`the embedded sidecar (pid ${sidecar.pid}) ${how}${this._closed ? "" : "; pending calls were rejected and later calls fail until you connect() again"}${tail ? `\nits last output:\n${tail}` : ""}`, this.url));
      });
    }
  }

  get info(): SidecarInfo {
    if (this._info === null) throw new JaxBridgeError("the session has not completed its handshake");
    return this._info;
  }

  get instance(): string {
    return this._info?.instance ?? "";
  }

  get closed(): boolean {
    return this._closed || this.transport.deadError !== null;
  }

  /** Requests sent and not yet answered. */
  get inFlight(): number {
    return this.transport.inFlight;
  }

  /** Messages this session sent, and the requests they carried (several per message when coalesced, docs/protocol.md "Coalesced messages"). */
  get traffic(): { readonly messages: number; readonly requests: number } {
    return { ...this.transport.sent };
  }

  /**
   * Send one request (its fields typed by the op table, src/wire/ops.ts) and
   * return its result; an error reply throws SidecarError.
   */
  async request<O extends Op>(op: O, fields: Request<O>, opts: EventRequestOptions = {}): Promise<Reply<O>> {
    if (requestHooks.size === 0 || op === "free") return this.send(op, fields, opts);
    const watches = [...requestHooks].flatMap((hook) => hook(op, this) ?? []);
    if (watches.length === 0) return this.send(op, fields, opts);
    const signal = AbortSignal.any([...(opts.signal ? [opts.signal] : []), ...watches.map((w) => w.signal)]);
    try {
      return await this.send(op, fields, { ...opts, signal });
    } finally {
      for (const w of watches) w.settled();
    }
  }

  /** Install a request hook for every session, present and future; returns the function that removes it. */
  static addRequestHook(hook: RequestHook): () => void {
    requestHooks.add(hook);
    return () => void requestHooks.delete(hook);
  }

  private async send<O extends Op>(op: O, fields: Request<O>, opts: EventRequestOptions): Promise<Reply<O>> {
    this.lastSent = Date.now();
    const timeoutMs = opts.timeoutMs ?? this.defaultTimeoutMs;
    if (opts.callbacks !== undefined && opts.callbacks.length > 0) return (await this.requestWithEvents(op, fields, opts.callbacks, opts.signal, timeoutMs)) as Reply<O>;
    if (opts.signal === undefined && timeoutMs === undefined) {
      // Cannot be abandoned: the fast path (eager dispatch sends many of these).
      const upTo = this.freesReleased;
      const reply = await this.transport.request((id) => this.build(id, op, fields, upTo), {});
      return this.unpackReply(reply, op) as Reply<O>;
    }
    let sent: { id: number; sentAt: number } | undefined;
    let reply: Frame[];
    const upTo = this.freesReleased;
    try {
      reply = await this.transport.request(
        (id) => {
          sent = { id, sentAt: Date.now() };
          return this.build(id, op, fields, upTo);
        },
        { signal: opts.signal, timeoutMs },
      );
    } catch (e) {
      if (sent !== undefined && (e instanceof AbortedError || e instanceof DeadlineError)) this.noteAbandoned(sent.id, op, fields, sent.sentAt);
      throw e;
    }
    // The decoder cannot know an op's reply type: this is where the table's word is taken for it.
    return this.unpackReply(reply, op) as Reply<O>;
  }

  // --- abandoned calls (the REPL tells the truth about them, issue 15) -----------------------------

  private readonly abandoned = new Map<number, AbandonedCall>();

  private noteAbandoned(id: number, op: Op, fields: object, sentAt: number): void {
    if (this.closed) return;
    const fn = op === "call" ? (fields as { fn?: unknown }).fn : undefined;
    const what = typeof fn === "string" ? `call ${fn}` : op === "run" ? "program" : op;
    this.abandoned.set(id, { id, what, sentAt });
  }

  /** Calls given up on whose replies have not arrived, oldest first: the sidecar is still busy with them (or has them queued). */
  get abandonedCalls(): AbandonedCall[] {
    return this.closed ? [] : [...this.abandoned.values()];
  }

  /**
   * The request's frames. Queued frees ride along instead of costing a
   * message of their own, but only those released before the request was
   * made (`upTo`, from `freesReleased`): a request made earlier and sent
   * later (it waited for a slot) may name arrays freed since.
   */
  private build(id: number, op: Op, fields: object, upTo: number): Frame[] {
    const free = op === "free" ? undefined : this.takeFrees(upTo);
    return encode(free === undefined ? { id, op, ...fields } : { id, op, ...fields, free: free.map(wireId) });
  }

  /** How many frees were ever queued: the position a request made now may take frees up to. */
  private get freesReleased(): number {
    return this.freesTaken + this.frees.length;
  }

  /** Take the queued frees among the first `upTo` ever queued (undefined if none). */
  private takeFrees(upTo: number): number[] | undefined {
    const n = Math.min(upTo - this.freesTaken, this.frees.length);
    if (n <= 0) return undefined;
    const taken = n === this.frees.length ? this.frees : this.frees.slice(0, n);
    this.frees = n === this.frees.length ? [] : this.frees.slice(n);
    this.freesTaken += n;
    return taken;
  }

  /**
   * A request whose callback events are routed to `table`. Resolves after
   * the reply and after every event was delivered and its callback returned;
   * rejects with the first callback error, on the deadline (which covers the
   * callbacks too), on abort, and when the session dies.
   */
  private async requestWithEvents(op: Op, fields: object, table: readonly HostCallback[], signal: AbortSignal | undefined, timeoutMs: number | undefined): Promise<unknown> {
    const start = Date.now();
    const upTo = this.freesReleased;
    let route: CallEvents | undefined;
    let kill!: (err: Error) => void;
    const killed = new Promise<never>((_, reject) => (kill = reject));
    killed.catch(() => {});
    this.liveCalls.add(kill);
    try {
      let reply: Frame[];
      try {
        reply = await this.transport.request(
          (id) => {
            route = new CallEvents(id, table, this);
            this.eventRoutes.set(id, route);
            return this.build(id, op, fields, upTo);
          },
          { signal, timeoutMs },
        );
      } catch (e) {
        // The route stays until the abandoned reply arrives (freeAbandoned), acking what still comes.
        route?.abandon();
        if (route !== undefined && (e instanceof AbortedError || e instanceof DeadlineError)) this.noteAbandoned(route.call, op, fields, start);
        throw e;
      }
      // Every event of this call preceded its reply on the wire: all were routed.
      this.eventRoutes.delete(route!.call);
      const waits: Promise<unknown>[] = [route!.drained(), killed];
      let timer: NodeJS.Timeout | undefined;
      let onAbort: (() => void) | undefined;
      if (timeoutMs !== undefined && Number.isFinite(timeoutMs)) {
        const left = Math.max(0, timeoutMs - (Date.now() - start));
        waits.push(new Promise((_, reject) => (timer = setTimeout(() => reject(new DeadlineError(`call ${route!.call} passed its deadline of ${timeoutMs} ms while its callbacks ran`)), left))));
      }
      if (signal) {
        waits.push(new Promise((_, reject) => {
          onAbort = () => reject(new AbortedError("call aborted while its callbacks ran"));
          if (signal.aborted) onAbort();
          else signal.addEventListener("abort", onAbort, { once: true });
        }));
      }
      try {
        await Promise.race(waits);
      } catch (e) {
        route!.abandon();
        this.freeAbandoned(reply);
        throw e;
      } finally {
        if (timer) clearTimeout(timer);
        if (onAbort) signal?.removeEventListener("abort", onAbort);
      }
      const failed = route!.error;
      if (failed !== undefined) {
        this.freeAbandoned(reply);
        throw failed.error;
      }
      return this.unpackReply(reply, op);
    } finally {
      this.liveCalls.delete(kill);
    }
  }

  /** A message without an id: a callback batch for a pending call (else logged once and dropped). */
  private onEvent(frames: Frame[]): void {
    let env: Record<string, unknown>;
    try {
      env = decode(frames, this).envelope;
    } catch (e) {
      // The call it names, if readable, fails with the reason; otherwise nothing can be matched to it.
      const what = frames.length ? classify(frames[0]!) : null;
      const route = what?.kind === "event" && what.call !== null ? this.eventRoutes.get(what.call) : undefined;
      const err = new ProtocolError(`an event from the sidecar could not be decoded: ${(e as Error).message}`);
      if (route) route.fail(err);
      else this.warnOnce("undecodable-event", `jaxbridge: ${err.message}; dropped`);
      return;
    }
    if (env.event === "restarting") {
      // The sidecar gives up on a hung run and exits; its supervisor starts a fresh one.
      const reason = String(env.cause ?? "unknown");
      this.transport.fail(
        new SidecarRestartedError(`the sidecar at ${this.url} is restarting (${reason}); its arrays are gone: connect() again`, { address: this.url, reason, previousInstance: this.instance }),
      );
      return;
    }
    if (env.event !== "callbacks") {
      if (env.event !== undefined) this.warnOnce(`event-${String(env.event)}`, `jaxbridge: unknown event ${JSON.stringify(env.event)} from the sidecar; dropped`);
      return;
    }
    const call = env.call;
    const seq = env.batch;
    const events = Array.isArray(env.events) ? (env.events as BatchEntry[]) : [];
    const route = typeof call === "number" ? this.eventRoutes.get(call) : undefined;
    if (route === undefined || typeof seq !== "number") {
      this.callbackStats.dropped += countEvents(events);
      this.warnOnce(`unknown-call-${String(call)}`, `jaxbridge: callback events for call ${String(call)}, which is not pending (finished or unknown); dropped`);
      if (typeof call === "number" && typeof seq === "number") this.sendAck(call, seq);
      return;
    }
    route.onBatch(seq, events);
  }

  sendAck(call: number, batch: number): void {
    if (this.closed) return;
    // One-way (no id, no reply), so it bypasses request(); the fields are still the table's.
    const fields: Request<"ack"> = { call, batch };
    this.transport.sendOneWay(encode({ op: "ack", ...fields })).catch(() => {});
  }

  warnOnce(key: string, message: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.eventWarnings.push(message);
    if (process.env.JAXBRIDGE_QUIET !== "1") console.warn(message);
  }

  /**
   * Place the array leaves of a pytree with a sharding (`jax.device_put(x,
   * sharding)`): `devicePut(x, new NamedSharding(jb.makeMesh([4], ["x"]),
   * P("x")))` splits axis 0 over 4 devices; the result's `sharding` and
   * `addressableShards` say where each piece went. The older form
   * `{mesh: {shape: [4], axes: ["x"]}, spec: ["x"]}` (a mesh over the first
   * devices) still works. Static leaves stay here.
   */
  async devicePut<T>(tree: T, sharding: NamedSharding | ShardingSpec, opts: RequestOptions = {}): Promise<DeviceTree<T>> {
    const named = sharding instanceof NamedSharding ? sharding : legacySharding(this.info.devices, sharding.mesh, sharding.spec);
    const wire = named.toWire();
    const arrays = (leaf: unknown) => (leaf instanceof NDArray || leaf instanceof DeviceArray ? leaf : undefined);
    return (await this.swapLeaves(tree, arrays, (value) => this.request("device_put", { value, sharding: wire }, opts))) as DeviceTree<T>;
  }

  /**
   * A mesh over this sidecar's devices, the first `prod(axisSizes)` of them
   * in order, as `jax.make_mesh` lays them out on CPU and GPU (axis types
   * Auto unless given). `jb.makeMesh([2, 2], ["data", "model"])`.
   */
  makeMesh(axisSizes: readonly number[], axisNames: readonly string[], opts: MakeMeshOptions = {}): Mesh {
    return meshOver(this.info.devices, axisSizes, axisNames, opts);
  }

  /** The id of a device named by its string form (a handle's `device`). */
  deviceId(device: string): number | undefined {
    return this._info?.devices.find((d) => d.str === device)?.id;
  }

  private unpackReply(frames: Frame[], op: string): unknown {
    const { envelope } = decode(frames, this);
    if (envelope.ok === true) return envelope.result;
    throw remoteError(envelope.error, op);
  }

  async handshake(opts: RequestOptions = {}): Promise<SidecarInfo> {
    const sample = handshakeSample();
    const info = await this.request("hello", { protocol: PROTOCOL_VERSION, client: CLIENT, sample }, opts);
    if (info.protocol !== PROTOCOL_VERSION) throw new ProtocolError(`the sidecar speaks protocol ${info.protocol}, this client ${PROTOCOL_VERSION}`);
    if (!sameValue(info.sample, sample)) throw new ProtocolError("the handshake sample came back different: the two sides disagree on the wire format");
    const { sample: _echo, ...rest } = info;
    this._info = rest;
    const lease = rest.lease_seconds;
    if (typeof lease === "number" && lease > 0) {
      // Renew the sidecar's idle lease when the program sends nothing for a while.
      const every = Math.max(1000, (lease * 1000) / 4);
      this.keepalive = setInterval(() => {
        if (Date.now() - this.lastSent >= every) this.heartbeat();
      }, every);
      this.keepalive.unref();
    }
    return rest;
  }

  /**
   * The connection came back after a drop (the transport calls this before it
   * resends anything): the same sidecar instance, still holding this session?
   */
  private async resume(): Promise<void> {
    const before = this.instance;
    const frames = await this.transport.requestNow((id) => encode({ id, op: "hello", protocol: PROTOCOL_VERSION, client: CLIENT, sample: handshakeSample(), resume: before }), { timeoutMs: 30_000 });
    const info = this.unpackReply(frames, "hello") as Reply<"hello">;
    if (info.instance !== before) {
      const restarted = info.restarted;
      const reason = restarted && restarted.instance === before ? restarted.cause : undefined;
      throw new SidecarRestartedError(
        `the sidecar at ${this.url} was restarted (instance ${before} is now ${info.instance}${reason ? `: ${reason}` : ""}); its arrays are gone: connect() again`,
        { address: this.url, ...(reason ? { reason } : {}), previousInstance: before, instance: info.instance },
      );
    }
    if (!info.resumed) {
      throw new SidecarDiedError(`the sidecar at ${this.url} no longer holds this session (it ended it while the connection was down: past its disconnect grace or idle lease); connect() again`, this.url);
    }
  }

  /** A ping, at most one at a time: the sidecar answers at once, even while it computes. */
  private heartbeat(): void {
    if (this.pinging || this.closed) return;
    this.pinging = true;
    this.lastSent = Date.now();
    this.transport
      .requestNow((id) => encode({ id, op: "ping" }))
      .catch(() => {})
      .finally(() => (this.pinging = false));
  }

  /** Place the array leaves of a pytree on the device; static leaves stay here. */
  async put<T>(tree: T, opts: RequestOptions & { device?: number } = {}): Promise<DeviceTree<T>> {
    // A DeviceArray is already placed, unless it is to move to another device.
    const toPlace = (leaf: unknown) => (leaf instanceof NDArray || (leaf instanceof DeviceArray && opts.device !== undefined) ? leaf : undefined);
    const placed = await this.swapLeaves(tree, toPlace, (value) => {
      // Frees riding on this request would run after its arrays are decoded: for
      // a large put, send them first so the sidecar releases old buffers before
      // it allocates new ones (peak memory, and fresh pages are slow to fault in).
      if (this.frees.length > 0 && value.some((a) => a instanceof NDArray && a.nbytes >= LARGE_PUT_BYTES)) void this.flushFrees();
      return this.request("put", opts.device !== undefined ? { value, device: opts.device } : { value }, opts);
    });
    return placed as DeviceTree<T>;
  }

  /** Fetch the DeviceArray leaves of a pytree to the host; other leaves are returned as they are. */
  async get<T>(tree: T, opts: RequestOptions = {}): Promise<HostTree<T>> {
    const handles = (leaf: unknown) => (leaf instanceof DeviceArray ? new HandleRef(leaf.handle) : undefined);
    return (await this.swapLeaves(tree, handles, (value) => this.request("get", { value }, opts))) as HostTree<T>;
  }

  /**
   * What put, devicePut and get share: pick the leaves of `tree` to send
   * (`pick` maps a leaf to its wire form, or undefined to leave it here),
   * check that DeviceArrays among them belong to this session, send them in
   * one request, and put the reply's values in their places. A tree with
   * nothing to send comes back as it is, without a request.
   */
  private async swapLeaves<S>(tree: unknown, pick: (leaf: unknown) => S | undefined, send: (sent: S[]) => Promise<readonly unknown[]>): Promise<unknown> {
    const { leaves, treedef } = flatten(tree);
    const sent: S[] = [];
    const slots: number[] = [];
    leaves.forEach((leaf, i) => {
      const wire = pick(leaf);
      if (wire === undefined) return;
      if (leaf instanceof DeviceArray) this.checkOwned(leaf, `leaf ${i}`);
      sent.push(wire);
      slots.push(i);
    });
    if (sent.length === 0) return tree;
    const got = await send(sent);
    const out = [...leaves];
    slots.forEach((slot, k) => (out[slot] = got[k]));
    return unflatten(treedef, out);
  }

  async fetch(a: DeviceArray, opts: RequestOptions = {}): Promise<NDArray> {
    this.checkOwned(a, "");
    const [host] = await this.request("get", { value: [new HandleRef(a.handle)] }, opts);
    return host!;
  }

  /**
   * Call an allow-listed Python function by dotted name:
   * `await jb.call("jax.numpy.matmul", a, b)`; keyword arguments go last as
   * `kw({axis: 0})`. Array results stay on the device as DeviceArrays.
   */
  async call<T = unknown>(fn: string, ...args: unknown[]): Promise<T> {
    const last = args[args.length - 1];
    if (last instanceof Kwargs) return this.callWith<T>(fn, { args: args.slice(0, -1), kwargs: last.values });
    return this.callWith<T>(fn, { args });
  }

  async callWith<T = unknown>(fn: string, opts: CallOptions = {}): Promise<T> {
    const args = opts.args ?? [];
    const kwargs = opts.kwargs ?? {};
    args.forEach((a, i) => this.checkWireValue(a, `args[${i}]`));
    for (const [k, v] of Object.entries(kwargs)) this.checkWireValue(v, `kwargs['${k}']`);
    return (await this.request("call", { fn, args, kwargs, fetch: opts.fetch === true }, opts)) as T;
  }

  /** Called by the decoder for every PyRef in a reply. */
  adoptPyRef(id: number, pythonType: string, repr: string): PyRef {
    const live = this.pyrefs.get(id)?.deref();
    if (live !== undefined) {
      // The sidecar counted this copy; we keep one PyRef per id.
      this.release(id);
      return live;
    }
    const ref = new PyRef(this, id, pythonType, repr);
    this.pyrefs.set(id, new WeakRef(ref));
    return ref;
  }

  /**
   * A proxy for a Python module the sidecar allows (`serve --allow mypkg`):
   * `const m = await jb.import("mypkg.models"); const net = await m.MLP(kw({in_size: 4}))`.
   */
  async import(module: string, opts: RequestOptions = {}): Promise<PyProxy> {
    await this.request("import", { module }, opts);
    return pyProxy(this, module);
  }

  /** Call a public method (or `__call__`) of a remote object: a PyRef or a RemoteModule. */
  async callMethod<T = unknown>(target: PyRef | RemoteModule, name: string, ...args: unknown[]): Promise<T> {
    const last = args[args.length - 1];
    const kwargs = last instanceof Kwargs ? last.values : {};
    const positional = last instanceof Kwargs ? args.slice(0, -1) : args;
    this.checkWireValue(target, "target");
    positional.forEach((a, i) => this.checkWireValue(a, `args[${i}]`));
    for (const [k, v] of Object.entries(kwargs)) this.checkWireValue(v, `kwargs['${k}']`);
    return (await this.request("call_method", { target, name, args: positional, kwargs, fetch: false })) as T;
  }

  /** lerax's structural fingerprint of a value as the sidecar sees it: sha256 of repr(jax.tree.structure). */
  async fingerprint(value: unknown, opts: RequestOptions = {}): Promise<Uint8Array> {
    this.checkWireValue(value, "value");
    return new Uint8Array(await this.request("fingerprint", { value }, opts));
  }

  /** The fingerprint and the bytes `equinox.tree_serialise_leaves` writes for a value held in the sidecar. */
  async serialiseLeaves(value: unknown, opts: RequestOptions = {}): Promise<{ fingerprint: Uint8Array; leaves: Uint8Array }> {
    this.checkWireValue(value, "value");
    const r = await this.request("serialise_leaves", { value }, opts);
    return { fingerprint: new Uint8Array(r.fingerprint), leaves: new Uint8Array(r.leaves) };
  }

  /** Load equinox leaf bytes into a skeleton held in the sidecar (e.g. a freshly built remote module). */
  async deserialiseLeaves<T = unknown>(like: unknown, leaves: Uint8Array, opts: RequestOptions = {}): Promise<T> {
    this.checkWireValue(like, "like");
    // As an array value: its bytes travel as frames of at most 16 MiB, under every frame limit.
    const bytes = new NDArray(new Uint8Array(leaves.buffer, leaves.byteOffset, leaves.byteLength), [leaves.byteLength], "uint8");
    return (await this.request("deserialise_leaves", { like, leaves: bytes, fetch: false }, opts)) as T;
  }

  /** Names one level below a dotted path that this sidecar lets `call` reach ("" for the roots), for completion. */
  async listAttrs(path = "", opts: RequestOptions = {}): Promise<AttrEntry[]> {
    return this.request("list_attrs", { path }, opts);
  }

  /** The sidecar's counters: arrays and Python objects held, their bytes, requests served, callback events sent. */
  async stats(opts: RequestOptions = {}): Promise<SidecarStats> {
    await this.flushFrees();
    return this.request("stats", {}, opts);
  }

  async ping(opts: RequestOptions = {}): Promise<void> {
    await this.request("ping", {}, opts);
  }

  // --- eager dispatch (issue 15): client-chosen handles, sync, memory -------------------------

  private nextClientHandle = 1;
  private lastDispatch: Promise<unknown> = Promise.resolve();

  /** Fresh client-chosen handle ids, in [1, 2**32): the sidecar's own are from 2**32 up (docs/protocol.md "Client-chosen handles"). */
  newHandleIds(n: number): number[] {
    if (this.nextClientHandle + n >= 2 ** 32) throw new JaxBridgeError("this session has used all 2**32 - 1 client-chosen handle ids; open a new session");
    const ids: number[] = [];
    for (let i = 0; i < n; i++) ids.push(this.nextClientHandle++);
    return ids;
  }

  /**
   * Send a request whose results the caller already holds (an eager op's
   * outputs at client-chosen ids) without waiting for it; `sync()` waits for
   * it and everything sent before.
   */
  dispatch<O extends Op>(op: O, fields: Request<O>): Promise<Reply<O>> {
    const p = this.request(op, fields);
    this.lastDispatch = p;
    return p;
  }

  /**
   * Wait until every operation dispatched so far on this session has run
   * (the sidecar runs requests in arrival order, so the last one is enough).
   * Failures are not thrown here: they reject the awaits of the arrays they
   * were to make, and of the arrays computed from those.
   */
  async sync(): Promise<void> {
    await this.lastDispatch.catch(() => {});
  }

  /** `tidy` (session/memory.ts) as a method of the session, as the REPL's `jb` offers it: arrays of every session count. */
  tidy<T>(fn: () => T | Promise<T>): Promise<T> {
    return tidy(fn);
  }

  /** `scope` (session/memory.ts): `using scope = jb.scope()`. */
  scope(): ArrayScope {
    return scope();
  }

  /** `keep` (session/memory.ts): exempt arrays from every tidy and scope. */
  keep<T>(value: T): T {
    return keep(value);
  }

  /** The sidecar's memory accounting: arrays held, bytes per device, the peak (after queued frees are sent). */
  async memory(opts: RequestOptions = {}): Promise<SidecarMemory> {
    await this.flushFrees();
    return this.request("memory", {}, opts);
  }

  /** `block_until_ready` on the sidecar: for DeviceArray.block(), whose producing request may have replied on dispatch. */
  async blockUntilReady(a: DeviceArray): Promise<void> {
    await this.request("block", { handles: [wireId(a.handle)] });
  }

  /** Queue a handle to be freed with the next batch. */
  release(id: number): void {
    if (this.closed) return;
    this.frees.push(id);
    if (this.frees.length >= 4096) void this.flushFrees();
    else if (!this.freeScheduled) {
      // If no request comes along to carry them, send them on their own soon.
      this.freeScheduled = true;
      setTimeout(() => void this.flushFrees(), 20).unref();
    }
  }

  /** Send queued frees now (they are otherwise sent on the next tick). */
  async flushFrees(opts: RequestOptions = {}): Promise<void> {
    this.freeScheduled = false;
    if (this.frees.length === 0 || this.closed) return;
    // A request of its own leaves after every request made before: all queued frees may go.
    const handles = this.takeFrees(this.freesReleased)!;
    try {
      await this.request("free", { handles: handles.map(wireId) }, opts);
    } catch {
      // The sidecar is gone, and its memory with it.
    }
  }

  private freeAbandoned(frames: Frame[]): void {
    const id = frames.length ? peekId(frames[0]!) : null;
    if (id !== null) {
      this.eventRoutes.delete(id);
      this.abandoned.delete(id);
    }
    try {
      const { handles } = decode(frames, this);
      for (const h of handles) h.dispose();
    } catch {
      // an undecodable abandoned reply holds nothing we could free
    }
  }

  private checkOwned(a: DeviceArray, path: string): void {
    if (a.disposed) throw new BridgeInputError(`DeviceArray ${a.handle} (${a.dtype}[${a.shape.join(", ")}]) was disposed`, path);
    if (a.owner !== this) throw new BridgeInputError(`DeviceArray ${a.handle} belongs to another session (${a.owner.instance || "closed"})`, path);
  }

  /** Only values Python can rebuild may be sent as call arguments; say where anything else is. */
  private checkWireValue(v: unknown, path: string): void {
    if (v === null || v === undefined || typeof v === "number" || typeof v === "boolean" || typeof v === "string") return;
    if (typeof v === "bigint") {
      if (v < -(2n ** 63n) || v >= 2n ** 64n) throw new BridgeInputError(`integer ${v} does not fit in 64 bits`, path);
      return;
    }
    if (v instanceof NDArray) return;
    if (v instanceof DeviceArray) return this.checkOwned(v, path);
    if (v instanceof PyRef) {
      if (v.owner !== this) throw new BridgeInputError("PyRef belongs to another session", path);
      return;
    }
    if (v instanceof RemoteModule) {
      for (const [k, x] of Object.entries(v)) this.checkWireValue(x, `${path}.${k}`);
      return;
    }
    if (Array.isArray(v)) return v.forEach((x, i) => this.checkWireValue(x, `${path}[${i}]`));
    if (typeof v === "object" && (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null)) {
      for (const [k, x] of Object.entries(v)) this.checkWireValue(x, `${path}['${k}']`);
      return;
    }
    if (ArrayBuffer.isView(v)) throw new BridgeInputError(`a ${v.constructor.name} is not an array here: wrap it with array(typed, dtype, shape)`, path);
    throw new BridgeInputError(`${describe(v, "kind")} cannot be sent to Python; call arguments are arrays, numbers, strings, booleans, null, lists and plain objects`, path);
  }

  /**
   * Close the connection and stop the embedded sidecar. Calls still in flight
   * reject with SessionClosedError. Always settles within a few seconds,
   * whatever the sidecar is doing (busy, stopped, already dead); a second
   * call returns the same promise.
   */
  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    // A shared sidecar would keep what this session holds until its lease or
    // disconnect grace ran out: `close` frees it all at once (answered at once
    // even behind a running computation; bounded anyway). An embedded
    // sidecar's handles die with it.
    if (!this.closed && this.sidecar === undefined && !this.transport.reconnecting) {
      await this.transport.requestNow((id) => encode({ id, op: "close" }), { timeoutMs: 2000 }).catch(() => {});
    }
    this._closed = true;
    if (this.keepalive) clearInterval(this.keepalive);
    this.transport.close();
    if (defaultSession === this) defaultSession = null;
    await this.sidecar?.stop();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}


