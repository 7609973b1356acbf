/**
 * One DEALER socket, one reader loop, replies dispatched by id. Bounds the
 * requests in flight, serialises sends (zeromq.js allows one at a time), and
 * never lets a call wait forever:
 *
 * - Reconnection. The socket has a random routing id of its own, so the
 *   sidecar knows it again after a reconnect (it names sessions by it). A
 *   dropped connection is not a dead sidecar: calls keep waiting while
 *   libzmq reconnects, up to `reconnectGraceMs`. When the connection is back
 *   the session's `onResume` runs first (a `hello` that names the instance
 *   this session knew; it throws if the sidecar restarted or ended the
 *   session), then every request still waiting for its reply is sent again,
 *   marked `resent` (the sidecar answers one it already ran from its memory
 *   and never runs a request twice), then queued sends go out.
 * - Liveness. While calls are pending and the sidecar has said nothing for
 *   `heartbeatMs`, `onHeartbeat` sends a ping (the sidecar answers at once,
 *   even while it computes). Nothing heard for `reconnectGraceMs` while
 *   something is awaited: the sidecar is declared gone.
 * - Distrust. A reply whose id can be read settles that call (a body it
 *   cannot decode rejects that call alone, in the session). A message that
 *   names no request fails the whole transport with a ProtocolError after
 *   `protocolGraceMs`, during which well-formed replies still settle their
 *   calls.
 */
import { randomBytes } from "node:crypto";
import { Dealer } from "zeromq";

/** The libzmq version zeromq.js was built with (`jaxbridge doctor` reports it). */
export { version as libzmqVersion } from "zeromq";
import { type Frame, type MessageKind, classify, isBatch, markResent, packBatch, splitBatch } from "./protocol.js";
import { AbortedError, AuthError, DeadlineError, ProtocolError, SessionClosedError, SidecarDiedError } from "../values/errors.js";

export interface CurveClientKeys {
  /** The sidecar's public key (Z85, 40 characters). */
  serverPublicKey: string;
  publicKey: string;
  secretKey: string;
}

export interface TransportOptions {
  url: string;
  /** Requests in flight at once; more wait in TypeScript (default 1024). */
  maxInFlight?: number;
  curve?: CurveClientKeys;
  /** ZMTP heartbeats for remote peers, so a vanished host is noticed (ms; default 1000, 0 to disable); also the interval of liveness pings. */
  heartbeatMs?: number;
  /** How long the sidecar may be out of reach (no connection, or silent while calls wait) before it is declared gone (ms; default 30000). */
  reconnectGraceMs?: number;
  /** How long well-formed replies still settle their calls after a message that names no request (ms; default 2000). */
  protocolGraceMs?: number;
  /** Send the requests queued behind a send in one message (default true; docs/protocol.md "Coalesced messages"). */
  coalesce?: boolean;
}

export interface RequestOptions {
  signal?: AbortSignal | undefined;
  /** Milliseconds from now after which the call rejects with DeadlineError. */
  timeoutMs?: number | undefined;
}

interface Outgoing {
  frames: Frame[];
  /** How many messages this one carries (coalesced), if more than one. */
  parts?: number;
  resolve(): void;
  reject(err: Error): void;
}

interface Pending {
  resolve(frames: Frame[]): void;
  reject(err: Error): void;
  /** Set once the caller gave up: the reply, when it comes, is handed to `onAbandoned`. */
  abandoned: boolean;
  cleanup(): void;
  /** What was sent, to send again after a reconnect. */
  frames: Frame[];
}

export class Transport {
  readonly url: string;
  private readonly socket: Dealer;
  private readonly pending = new Map<number, Pending>();
  /** Requests waiting for a slot, in arrival order (a Set: O(1) to take the first and to drop an aborted one). */
  private readonly waiting = new Set<() => void>();
  private readonly maxInFlight: number;
  private readonly coalesce: boolean;
  /** Waiting requests granted a slot that have not sent yet (they go before any newer request). */
  private granted = 0;
  private nextId = 1;
  private readonly outbox: Outgoing[] = [];
  private readonly priority: Outgoing[] = [];
  private pumping = false;
  /** Messages sent, and the requests (or one-way messages) they carried: fewer messages than requests when coalesced. */
  readonly sent = { messages: 0, requests: 0 };
  private dead: Error | null = null;
  private readonly curve: boolean;
  /** Set once a ZMTP handshake succeeded: a disconnect before that is a refusal, not a crash. */
  private handshaken = false;
  /** Set while the connection is down or being resumed: queued sends wait. */
  private gate: { since: number } | null = null;
  private downTimer: NodeJS.Timeout | undefined;
  private lastHeard = Date.now();
  private readonly heartbeatMs: number;
  private readonly graceMs: number;
  private readonly protocolGraceMs: number;
  private readonly beat: NodeJS.Timeout | undefined;
  private poisoned = false;
  /** Called with the frames of a reply whose caller already gave up (so its handles can be freed). */
  onAbandoned: (frames: Frame[]) => void = () => {};
  /** Called once when the transport dies. */
  onDeath: (err: Error) => void = () => {};
  /** Called with a message that is not a reply (no id): sidecar events (callback batches). */
  onEvent: (frames: Frame[]) => void = () => {};
  /** Called when the connection is back after a drop, before anything is resent; throws to end the transport (use `requestNow`). */
  onResume: (() => Promise<void>) | null = null;
  /** Called when the sidecar has been silent for `heartbeatMs` while calls wait: send a ping. */
  onHeartbeat: () => void = () => {};

  constructor(opts: TransportOptions) {
    this.url = opts.url;
    this.maxInFlight = opts.maxInFlight ?? 1024;
    this.coalesce = opts.coalesce ?? true;
    const remote = !opts.url.startsWith("ipc://") && !opts.url.startsWith("inproc://");
    const hb = opts.heartbeatMs ?? 1000;
    this.heartbeatMs = hb > 0 ? Math.max(hb, 1000) : 0;
    // A remote sidecar is declared gone after 30 s out of reach; a local one (ipc://),
    // which cannot blip, is given longer before silence alone counts as death.
    this.graceMs = opts.reconnectGraceMs ?? (remote ? 30_000 : 120_000);
    this.protocolGraceMs = opts.protocolGraceMs ?? 2000;
    this.socket = new Dealer({
      sendHighWaterMark: 0,
      receiveHighWaterMark: 0,
      linger: 0,
      // The sidecar names this session by it: the same id after a reconnect finds the session again.
      routingId: randomBytes(16).toString("hex"),
      ...(remote && hb > 0 ? { heartbeatInterval: hb, heartbeatTimeout: hb * 3, heartbeatTimeToLive: hb * 3 } : {}),
      ...(opts.curve
        ? { curveServerKey: opts.curve.serverPublicKey, curvePublicKey: opts.curve.publicKey, curveSecretKey: opts.curve.secretKey }
        : {}),
    });
    this.curve = opts.curve !== undefined;
    // Subscribe to socket events before connecting: a refusal can come within
    // a millisecond, and a monitor attached later would miss it.
    void this.watchEvents();
    this.socket.connect(opts.url);
    void this.readLoop();
    if (this.heartbeatMs > 0) {
      this.beat = setInterval(() => this.checkLiveness(), this.heartbeatMs);
      this.beat.unref();
    }
  }

  get inFlight(): number {
    return this.pending.size;
  }

  get deadError(): Error | null {
    return this.dead;
  }

  /** Whether the connection is down and being waited for (calls are held meanwhile). */
  get reconnecting(): boolean {
    return this.gate !== null;
  }

  /** Allocate an id, send the frames built for it, and resolve with the reply's frames. */
  async request(build: (id: number) => Frame[], opts: RequestOptions = {}): Promise<Frame[]> {
    return this.requestVia(build, opts, false);
  }

  /** As `request`, but sent even while the connection is being resumed (the resume handshake itself). */
  requestNow(build: (id: number) => Frame[], opts: RequestOptions = {}): Promise<Frame[]> {
    return this.requestVia(build, opts, true);
  }

  private async requestVia(build: (id: number) => Frame[], opts: RequestOptions, now: boolean): Promise<Frame[]> {
    if (this.dead) throw this.dead;
    const { signal, timeoutMs } = opts;
    if (signal?.aborted) throw abortError(signal);
    // Requests leave in the order they were made (a request may name ids an
    // earlier one produces, docs/protocol.md "Ordering"): one that finds others
    // waiting for a slot, or granted one but not yet sent, queues behind them.
    const queued = !now && (this.pending.size >= this.maxInFlight || this.waiting.size > 0 || this.granted > 0);
    if (queued) await this.waitForSlot(signal);
    try {
      if (this.dead) throw this.dead;
      const id = this.nextId;
      this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
      return this.start(id, build(id), signal, timeoutMs, now);
    } finally {
      if (queued) {
        this.granted--;
        this.releaseSlot();
      }
    }
  }

  /** Register request `id` as pending (synchronously) and send it (`now`: ahead of the queue). */
  private start(id: number, frames: Frame[], signal: AbortSignal | undefined, timeoutMs: number | undefined, now: boolean): Promise<Frame[]> {
    return new Promise<Frame[]>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = (): void => giveUp(abortError(signal!));
      const entry: Pending = {
        resolve,
        reject,
        abandoned: false,
        frames,
        cleanup: () => {
          if (timer) clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
        },
      };
      const giveUp = (err: Error): void => {
        if (entry.abandoned) return;
        entry.abandoned = true;
        entry.cleanup();
        reject(err);
      };
      if (timeoutMs !== undefined && Number.isFinite(timeoutMs)) {
        timer = setTimeout(() => giveUp(new DeadlineError(`call ${id} passed its deadline of ${timeoutMs} ms; its result will be freed when it arrives`)), timeoutMs);
      }
      signal?.addEventListener("abort", onAbort, { once: true });
      this.pending.set(id, entry);
      (now ? this.sendNow(frames) : this.enqueueSend(frames)).catch((err: unknown) => {
        if (this.pending.get(id) !== entry) return;
        this.pending.delete(id);
        entry.cleanup();
        this.releaseSlot();
        reject(err instanceof Error ? err : new Error(String(err)));
      });
    });
  }

  /** Send a message that gets no reply (`ack`); resolves once sent. */
  sendOneWay(frames: Frame[]): Promise<void> {
    if (this.dead) return Promise.reject(this.dead);
    return this.enqueueSend(frames);
  }

  /** Send in order after everything queued, once the connection is up. */
  private enqueueSend(frames: Frame[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.outbox.push({ frames, resolve, reject });
      void this.pump();
    });
  }

  /** Send ahead of the queue, even while the connection is being resumed (the resume handshake and what it resends). */
  private sendNow(frames: Frame[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.priority.push({ frames, resolve, reject });
      void this.pump();
    });
  }

  /** One send at a time (zeromq.js allows no more): priority sends first; the rest only while no resume is under way. */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      for (;;) {
        const item = this.priority.shift() ?? (this.gate ? undefined : this.takeOutgoing());
        if (item === undefined) return;
        if (this.dead) {
          item.reject(this.dead);
          continue;
        }
        this.sent.messages++;
        this.sent.requests += item.parts ?? 1;
        try {
          await this.socket.send(item.frames);
          item.resolve();
        } catch (err) {
          item.reject(this.dead ?? (err instanceof Error ? err : new Error(String(err))));
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  /**
   * The next message to send: the first queued one, coalesced with the small
   * ones queued behind it into one message (docs/protocol.md "Coalesced
   * messages"), so that requests made while a send was under way cost one
   * send, one wake-up of the sidecar and one reply message between them.
   */
  private takeOutgoing(): Outgoing | undefined {
    const first = this.outbox.shift();
    if (first === undefined || !this.coalesce || this.outbox.length === 0 || !coalescible(first.frames)) return first;
    const parts: Outgoing[] = [first];
    let bytes = frameBytes(first.frames);
    while (parts.length < COALESCE_MAX_PARTS && this.outbox.length > 0 && coalescible(this.outbox[0]!.frames)) {
      const b = frameBytes(this.outbox[0]!.frames);
      if (bytes + b > COALESCE_MAX_BYTES) break;
      bytes += b;
      parts.push(this.outbox.shift()!);
    }
    if (parts.length === 1) return first;
    return {
      frames: packBatch(parts.map((p) => p.frames)),
      parts: parts.length,
      resolve: () => {
        for (const p of parts) p.resolve();
      },
      reject: (err) => {
        for (const p of parts) p.reject(err);
      },
    };
  }

  /** Resolves once this request is granted a slot (in FIFO order); the caller gives the grant back when it has sent or failed. */
  private waitForSlot(signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const wake = (): void => {
        this.granted++;
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      const onAbort = (): void => {
        this.waiting.delete(wake);
        reject(abortError(signal!));
        this.releaseSlot();
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiting.add(wake);
    });
  }

  private releaseSlot(): void {
    while (this.waiting.size > 0 && this.pending.size + this.granted < this.maxInFlight) {
      const first = this.waiting.values().next().value!;
      this.waiting.delete(first);
      first();
    }
  }

  private async readLoop(): Promise<void> {
    try {
      for await (const frames of this.socket) {
        this.lastHeard = Date.now();
        this.dispatch(frames as Frame[]);
      }
    } catch (err) {
      if (!this.socket.closed) this.fail(new SidecarDiedError(`connection to ${this.url} failed: ${(err as Error).message}`, this.url));
    }
  }

  private dispatch(frames: Frame[]): void {
    if (frames.length > 1 && isBatch(frames[0]!)) {
      // Replies to a coalesced message, in one message of their own.
      let parts: Frame[][];
      try {
        parts = splitBatch(frames);
      } catch (e) {
        this.poison(e as ProtocolError);
        return;
      }
      for (const part of parts) this.dispatch(part);
      return;
    }
    const what: MessageKind = frames.length ? classify(frames[0]!) : { kind: "unattributable", why: "an empty message" };
    if (what.kind === "event") {
      // Events carry no id (docs/protocol.md, "Events"); the session routes them.
      this.onEvent(frames);
      return;
    }
    if (what.kind === "unattributable") {
      const said = what.error ? `: ${what.error.type}: ${what.error.message}` : "";
      this.poison(new ProtocolError(`the sidecar at ${this.url} sent ${what.why}${said}; no call can be matched to it, so this session ends`));
      return;
    }
    const entry = this.pending.get(what.id);
    if (entry === undefined) {
      // A reply nobody waits for: a duplicate answered again after a reconnect.
      return;
    }
    this.pending.delete(what.id);
    this.releaseSlot();
    if (entry.abandoned) {
      this.onAbandoned(frames);
      return;
    }
    entry.cleanup();
    entry.resolve(frames);
  }

  /** A message that names no request: some call will never get its reply. Fail everything after a short grace. */
  private poison(err: ProtocolError): void {
    if (this.poisoned || this.dead) return;
    this.poisoned = true;
    setTimeout(() => this.fail(err), this.protocolGraceMs).unref();
  }

  private checkLiveness(): void {
    if (this.dead || this.socket.closed) return;
    const silent = Date.now() - this.lastHeard;
    if (this.pending.size === 0) {
      this.lastHeard = Math.max(this.lastHeard, Date.now() - this.heartbeatMs);
      return;
    }
    if (this.gate) return; // the reconnect grace runs its own clock
    if (silent >= this.graceMs) {
      this.fail(new SidecarDiedError(`the sidecar at ${this.url} has not answered for ${Math.round(silent / 1000)} s while calls waited (not even a ping); pending calls were rejected. Reconnect with connect()`, this.url));
    } else if (silent >= this.heartbeatMs) {
      this.onHeartbeat();
    }
  }

  private connectionLost(): void {
    if (this.dead || this.gate) return;
    this.gate = { since: Date.now() };
    this.downTimer = setTimeout(
      () => this.fail(new SidecarDiedError(`lost the connection to the sidecar at ${this.url}, and it did not come back within ${this.graceMs / 1000} s; pending calls were rejected. Reconnect with connect()`, this.url)),
      this.graceMs,
    );
    this.downTimer.unref();
  }

  private async connectionBack(): Promise<void> {
    if (!this.gate || this.dead) return;
    if (this.downTimer) clearTimeout(this.downTimer);
    this.downTimer = undefined;
    try {
      if (this.onResume) await this.onResume();
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    // Everything still waiting for a reply goes again, in order, marked so the sidecar runs none twice.
    const resent = [...this.pending.entries()].sort(([a], [b]) => a - b);
    for (const [, entry] of resent) {
      const [head, ...rest] = entry.frames;
      if (head === undefined) continue;
      this.sendNow([markResent(head), ...rest]).catch(() => {});
    }
    this.gate = null;
    void this.pump();
  }

  private async watchEvents(): Promise<void> {
    try {
      for await (const event of this.socket.events) {
        if (event.type === "handshake") {
          const again = this.handshaken;
          this.handshaken = true;
          this.lastHeard = Date.now();
          if (again || this.gate) void this.connectionBack();
        } else if (event.type === "disconnect" && !this.socket.closed && !this.handshaken && this.url.startsWith("tcp://")) {
          // Dropped during the ZMTP handshake: with CURVE the sidecar could not
          // open our HELLO, i.e. the server key we were given is not its key.
          this.fail(
            this.curve
              ? new AuthError(`the sidecar at ${this.url} closed the connection during the handshake: the server public key given in \`curve\` is not this sidecar's key`, this.url)
              : new AuthError(`the sidecar at ${this.url} closed the connection during the handshake: it probably requires CURVE: pass \`curve\` keys (its public key and this client's pair) to connect()`, this.url),
          );
        } else if (event.type === "disconnect" && !this.socket.closed) {
          // Not (yet) a dead sidecar: libzmq reconnects by itself; calls wait for the grace.
          this.connectionLost();
        } else if (event.type === "handshake:error:auth" || event.type === "handshake:error:protocol") {
          const why =
            event.type === "handshake:error:auth"
              ? "this client's public key is not among the sidecar's --authorized-keys"
              : this.curve
                ? "this client uses CURVE and the sidecar does not (or it is not a jaxbridge sidecar)"
                : "it requires CURVE: pass `curve` keys (its public key and this client's pair) to connect()";
          this.fail(new AuthError(`the sidecar at ${this.url} refused the connection (${event.type}): ${why}`, this.url));
        }
      }
    } catch {
      // events end when the socket closes
    }
  }

  /** Reject every pending and waiting call with `err`, and every later call too. */
  fail(err: Error): void {
    if (this.dead) return;
    this.dead = err;
    if (this.downTimer) clearTimeout(this.downTimer);
    if (this.beat) clearInterval(this.beat);
    for (const [, entry] of this.pending) {
      entry.cleanup();
      if (!entry.abandoned) entry.reject(err);
    }
    this.pending.clear();
    const waiting = [...this.waiting];
    this.waiting.clear();
    for (const wake of waiting) wake();
    for (const item of [...this.priority.splice(0), ...this.outbox.splice(0)]) item.reject(err);
    this.gate = null;
    this.onDeath(err);
  }

  /** Close the socket; calls still in flight reject with SessionClosedError. */
  close(): void {
    this.fail(new SessionClosedError(`the session with ${this.url} was closed while this call was in flight`));
    if (!this.socket.closed) this.socket.close();
  }
}

/** Messages up to this size are coalesced (a large array goes alone, and nothing waits behind its copy). */
const COALESCE_MAX_BYTES = 256 * 1024;
/** At most this many requests in one coalesced message (a bound on the replies the sidecar gathers before sending). */
const COALESCE_MAX_PARTS = 256;

function frameBytes(frames: readonly Frame[]): number {
  let n = 0;
  for (const f of frames) n += f.length;
  return n;
}

function coalescible(frames: readonly Frame[]): boolean {
  return frameBytes(frames) <= COALESCE_MAX_BYTES;
}

function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof AbortedError) return reason;
  return new AbortedError(`call aborted${reason instanceof Error ? `: ${reason.message}` : reason !== undefined ? `: ${String(reason)}` : ""}; its result will be freed when it arrives`);
}
