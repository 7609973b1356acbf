/**
 * Delivery of one call's callback events (see docs/protocol.md, "Events",
 * and src/lerax/callbacks.ts). The session creates one `CallEvents` per `run`
 * whose program has callbacks and routes `{"event": "callbacks", "call": id}`
 * batches to it.
 *
 * - Ordered callbacks run strictly in arrival order, each awaited before
 *   the next (one promise chain for the whole call). Unordered ones start
 *   as they arrive and may overlap.
 * - A batch is acked (cumulatively, `{"op": "ack", "call", "batch"}`) once
 *   every callback of it and of the batches before it has returned: that is
 *   the backpressure that bounds the sidecar's memory when `fn` is slow.
 * - The first error a callback throws (or a promise it returns rejects with)
 *   is kept; later callbacks of that call are skipped (but still acked), and
 *   the call rejects with it after the sidecar's reply arrived.
 * - An abandoned call (deadline, abort, closed session) acks everything it
 *   received and everything that still comes, without running callbacks, so
 *   the sidecar finishes the run and serves the next one.
 */
import type { NDArray } from "../values/ndarray.js";

/**
 * A host callback recorded by a `callback` equation: the program names it by
 * its position in the root trace's table (first seen = 0), never by the JS
 * function, so the program's bytes and hash do not depend on which function
 * it is. `deliver` rebuilds the arguments from the event's arrays and calls
 * the user's function (see src/lerax/callbacks.ts).
 */
export interface HostCallback {
  readonly ordered: boolean;
  deliver(arrays: NDArray[]): unknown;
}

export interface EventSink {
  sendAck(call: number, batch: number): void;
  warnOnce(key: string, message: string): void;
  readonly callbackStats: CallbackStats;
}

export interface CallbackStats {
  /** Event batches received (one wire message each). */
  batches: number;
  /** Callback events received. */
  events: number;
  /** Events dropped: unknown call, unknown callback id, or an abandoned call. */
  dropped: number;
}

export class CallEvents {
  private chain: Promise<void> = Promise.resolve();
  private readonly batches: Promise<void>[] = [];
  private readonly done = new Set<number>();
  private acked = -1;
  private received = -1;
  private failed = false;
  private err: unknown;
  private abandoned = false;

  constructor(
    readonly call: number,
    private readonly table: readonly HostCallback[],
    private readonly sink: EventSink,
  ) {}

  get error(): { error: unknown } | undefined {
    return this.failed ? { error: this.err } : undefined;
  }

  onBatch(seq: number, events: readonly [number, NDArray[]][]): void {
    this.received = Math.max(this.received, seq);
    this.sink.callbackStats.batches++;
    this.sink.callbackStats.events += events.length;
    if (this.abandoned) {
      this.sink.callbackStats.dropped += events.length;
      this.ackUpTo(seq);
      return;
    }
    const unordered: Promise<void>[] = [];
    for (const ev of events) {
      const [id, arrays] = ev;
      const entry = typeof id === "number" ? this.table[id] : undefined;
      if (entry === undefined) {
        this.sink.callbackStats.dropped++;
        this.sink.warnOnce(`unknown-callback-${this.call}`, `jaxbridge: call ${this.call} received an event for callback id ${String(id)}, which its program's table (${this.table.length} entries) does not have; dropped`);
        continue;
      }
      if (entry.ordered) this.chain = this.chain.then(() => this.invoke(entry, arrays));
      else unordered.push(this.invoke(entry, arrays));
    }
    const batchDone = Promise.all([this.chain, ...unordered]).then(() => {
      this.done.add(seq);
      let next = this.acked + 1;
      while (this.done.has(next)) this.done.delete(next++);
      if (next - 1 > this.acked) this.ackUpTo(next - 1);
    });
    this.batches.push(batchDone);
  }

  private async invoke(entry: HostCallback, arrays: NDArray[]): Promise<void> {
    if (this.failed || this.abandoned) return;
    try {
      const r = entry.deliver(arrays);
      if (r !== null && typeof r === "object" && typeof (r as PromiseLike<unknown>).then === "function") await r;
    } catch (e) {
      if (!this.failed) {
        this.failed = true;
        this.err = e;
      }
    }
  }

  private ackUpTo(seq: number): void {
    if (seq <= this.acked) return;
    this.acked = seq;
    this.sink.sendAck(this.call, seq);
  }

  /** Fail the call with `err` (a batch that could not be decoded): later callbacks are skipped, batches still acked. */
  fail(err: unknown): void {
    if (!this.failed) {
      this.failed = true;
      this.err = err;
    }
  }

  /** Resolves when every batch received so far was delivered (never rejects). */
  async drained(): Promise<void> {
    let n = -1;
    while (n !== this.batches.length) {
      n = this.batches.length;
      await Promise.all(this.batches);
    }
  }

  /** The caller gave up: ack all that came and all that will, run no more callbacks. */
  abandon(): void {
    if (this.abandoned) return;
    this.abandoned = true;
    this.ackUpTo(this.received);
  }
}
