/**
 * One DEALER socket, one reader loop, replies dispatched by id. Bounds the
 * requests in flight, serialises sends (zeromq.js allows one at a time), and
 * rejects every pending call the moment the peer is known to be gone.
 */
import { Dealer } from "zeromq";

/** The libzmq version zeromq.js was built with (`jaxbridge doctor` reports it). */
export { version as libzmqVersion } from "zeromq";
import { type Frame, peekId } from "./protocol.js";
import { AbortedError, DeadlineError, SidecarDiedError } from "../values/errors.js";

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
  /** ZMTP heartbeats for remote peers, so a vanished host is noticed (ms; default 1000, 0 to disable). */
  heartbeatMs?: number;
}

export interface RequestOptions {
  signal?: AbortSignal | undefined;
  /** Milliseconds from now after which the call rejects with DeadlineError. */
  timeoutMs?: number | undefined;
}

interface Pending {
  resolve(frames: Frame[]): void;
  reject(err: Error): void;
  /** Set once the caller gave up: the reply, when it comes, is handed to `onAbandoned`. */
  abandoned: boolean;
  cleanup(): void;
}

export class Transport {
  readonly url: string;
  private readonly socket: Dealer;
  private readonly pending = new Map<number, Pending>();
  /** Requests waiting for a slot, in arrival order (a Set: O(1) to take the first and to drop an aborted one). */
  private readonly waiting = new Set<() => void>();
  private readonly maxInFlight: number;
  /** Waiting requests granted a slot that have not sent yet (they go before any newer request). */
  private granted = 0;
  private nextId = 1;
  private sendChain: Promise<void> = Promise.resolve();
  private dead: Error | null = null;
  private readonly curve: boolean;
  /** Set once a ZMTP handshake succeeded: a disconnect before that is a refusal, not a crash. */
  private handshaken = false;
  /** Called with the frames of a reply whose caller already gave up (so its handles can be freed). */
  onAbandoned: (frames: Frame[]) => void = () => {};
  /** Called once when the transport dies. */
  onDeath: (err: Error) => void = () => {};
  /** Called with a message that is not a reply (no id): sidecar events (callback batches). */
  onEvent: (frames: Frame[]) => void = () => {};

  constructor(opts: TransportOptions) {
    this.url = opts.url;
    this.maxInFlight = opts.maxInFlight ?? 1024;
    const remote = !opts.url.startsWith("ipc://") && !opts.url.startsWith("inproc://");
    const hb = opts.heartbeatMs ?? 1000;
    this.socket = new Dealer({
      sendHighWaterMark: 0,
      receiveHighWaterMark: 0,
      linger: 0,
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
  }

  get inFlight(): number {
    return this.pending.size;
  }

  get deadError(): Error | null {
    return this.dead;
  }

  /** Allocate an id, send the frames built for it, and resolve with the reply's frames. */
  async request(build: (id: number) => Frame[], opts: RequestOptions = {}): Promise<Frame[]> {
    if (this.dead) throw this.dead;
    const { signal, timeoutMs } = opts;
    if (signal?.aborted) throw abortError(signal);
    // Requests leave in the order they were made (a request may name ids an
    // earlier one produces, docs/protocol.md "Ordering"): one that finds others
    // waiting for a slot, or granted one but not yet sent, queues behind them.
    const queued = this.pending.size >= this.maxInFlight || this.waiting.size > 0 || this.granted > 0;
    if (queued) await this.waitForSlot(signal);
    try {
      if (this.dead) throw this.dead;
      const id = this.nextId;
      this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
      return this.start(id, build(id), signal, timeoutMs);
    } finally {
      if (queued) {
        this.granted--;
        this.releaseSlot();
      }
    }
  }

  /** Register request `id` as pending (synchronously) and send it. */
  private start(id: number, frames: Frame[], signal: AbortSignal | undefined, timeoutMs: number | undefined): Promise<Frame[]> {
    return new Promise<Frame[]>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = (): void => giveUp(abortError(signal!));
      const entry: Pending = {
        resolve,
        reject,
        abandoned: false,
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
      this.enqueueSend(frames).catch((err: unknown) => {
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

  /** Send without expecting a reply to be awaited by anyone (batched frees). */
  private enqueueSend(frames: Frame[]): Promise<void> {
    const next = this.sendChain.then(() => {
      if (this.dead) throw this.dead;
      return this.socket.send(frames);
    });
    this.sendChain = next.catch(() => {});
    return next;
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
        this.dispatch(frames as Frame[]);
      }
    } catch (err) {
      if (!this.socket.closed) this.fail(new SidecarDiedError(`connection to ${this.url} failed: ${(err as Error).message}`, this.url));
    }
  }

  private dispatch(frames: Frame[]): void {
    const id = frames.length ? peekId(frames[0]!) : null;
    if (id === null) {
      // Events carry no id (docs/protocol.md, "Events"); the session routes them.
      this.onEvent(frames);
      return;
    }
    const entry = this.pending.get(id);
    if (entry === undefined) {
      // A reply nobody waits for (its id was lost): nothing to resolve.
      return;
    }
    this.pending.delete(id);
    this.releaseSlot();
    if (entry.abandoned) {
      this.onAbandoned(frames);
      return;
    }
    entry.cleanup();
    entry.resolve(frames);
  }

  private async watchEvents(): Promise<void> {
    try {
      for await (const event of this.socket.events) {
        if (event.type === "handshake") {
          this.handshaken = true;
        } else if (event.type === "disconnect" && !this.socket.closed && !this.handshaken && this.url.startsWith("tcp://")) {
          // Dropped during the ZMTP handshake: with CURVE the sidecar could not
          // open our HELLO, i.e. the server key we were given is not its key.
          this.fail(
            new SidecarDiedError(
              `the sidecar at ${this.url} closed the connection during the handshake: ${this.curve ? "the server public key given in `curve` is not this sidecar's key" : "it probably requires CURVE: pass `curve` keys (its public key and this client's pair) to connect()"}`,
              this.url,
            ),
          );
        } else if (event.type === "disconnect" && !this.socket.closed) {
          // A moment's grace lets a more specific cause (the embedded child's
          // exit status) name the failure; pending calls still reject well within a second.
          setTimeout(() => this.fail(new SidecarDiedError(`the sidecar at ${this.url} disconnected; pending calls were lost. Reconnect with connect()`, this.url)), 100).unref();
        } else if (event.type === "handshake:error:auth" || event.type === "handshake:error:protocol") {
          const why =
            event.type === "handshake:error:auth"
              ? "this client's public key is not among the sidecar's --authorized-keys"
              : this.curve
                ? "this client uses CURVE and the sidecar does not (or it is not a jaxbridge sidecar)"
                : "it requires CURVE: pass `curve` keys (its public key and this client's pair) to connect()";
          this.fail(new SidecarDiedError(`the sidecar at ${this.url} refused the connection (${event.type}): ${why}`, this.url));
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
    for (const [, entry] of this.pending) {
      entry.cleanup();
      if (!entry.abandoned) entry.reject(err);
    }
    this.pending.clear();
    const waiting = [...this.waiting];
    this.waiting.clear();
    for (const wake of waiting) wake();
    this.onDeath(err);
  }

  close(): void {
    this.fail(new SidecarDiedError("the session is closed", this.url));
    if (!this.socket.closed) this.socket.close();
  }
}

function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof AbortedError) return reason;
  return new AbortedError(`call aborted${reason instanceof Error ? `: ${reason.message}` : reason !== undefined ? `: ${String(reason)}` : ""}; its result will be freed when it arrives`);
}
