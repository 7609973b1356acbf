/**
 * A client that distrusts replies (issue 13): a reply whose id it can read
 * settles that call alone, whatever its body; a message that names no
 * request fails the whole session with ProtocolError after a short grace
 * (in which good replies still settle their calls); no call waits forever.
 * The sidecar here is a fake (test/support/fake-sidecar.ts) that says what
 * the test tells it to. fast-check sends it random replies, and feeds the
 * codec random frames.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { Packr } from "msgpackr";
import { connect, type Session } from "../../src/session/session.js";
import { JaxBridgeError, ProtocolError } from "../../src/values/errors.js";
import { type Frame, decode, encode } from "../../src/wire/protocol.js";
import { type FakeSidecar, fakeSidecar } from "../support/fake-sidecar.js";

const raw = new Packr({ useRecords: false });
const pack = (v: unknown): Frame => raw.pack(v);
/** A msgpack ext (ext 8 format) of `type` around `payload`. */
const ext = (type: number, payload: Buffer): Buffer => Buffer.concat([Buffer.from([0xc7, payload.length, type]), payload]);

/** How long a call may take to settle after its reply (or its absence) in these tests. */
const SETTLE_MS = 6000;

function settles<T>(p: Promise<T>, ms = SETTLE_MS): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  return Promise.race([
    p.then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error })),
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`the call did not settle within ${ms} ms`)), ms).unref()),
  ]);
}

describe("a client that distrusts replies", function () {
  this.timeout(120_000);
  let fake: FakeSidecar;
  let jb: Session;
  beforeEach(async () => {
    fake = await fakeSidecar();
    jb = await connect({ url: fake.url, handshakeTimeoutMs: 10_000 });
  });
  afterEach(async () => {
    await jb.close();
    fake.close();
  });

  it("fails only the call whose reply it cannot decode", async () => {
    const a = jb.ping();
    const b = jb.ping();
    const ra = await fake.next();
    const rb = await fake.next();
    // An array that names a frame the message does not have.
    await ra.reply([Buffer.concat([Buffer.from([0x83]), pack("id"), pack(ra.id), pack("ok"), pack(true), pack("result"), ext(1, pack(["float32", [4], 1, 1]))])]);
    await rb.reply(encode({ id: rb.id, ok: true, result: "pong" }));
    const [sa, sb] = await Promise.all([settles(a), settles(b)]);
    assert.equal(sb.ok, true);
    assert.ok(!sa.ok && sa.error instanceof ProtocolError, String(!sa.ok && sa.error));
    // The session goes on.
    const c = jb.ping();
    const rc = await fake.next();
    await rc.reply(encode({ id: rc.id, ok: true, result: "pong" }));
    assert.equal((await settles(c)).ok, true);
  });

  it("fails the session with ProtocolError after a short grace when a message names no request", async () => {
    const a = jb.ping();
    const b = jb.ping();
    const ra = await fake.next();
    const rb = await fake.next();
    await ra.reply([Buffer.from([0xc1, 0x00, 0x07])]);
    // Within the grace a good reply still settles its call.
    await rb.reply(encode({ id: rb.id, ok: true, result: "pong" }));
    assert.equal((await settles(b)).ok, true);
    const t0 = Date.now();
    const sa = await settles(a);
    assert.ok(!sa.ok && sa.error instanceof ProtocolError && /no call can be matched/.test((sa.error as Error).message), String(!sa.ok && sa.error));
    assert.ok(Date.now() - t0 < SETTLE_MS);
    await assert.rejects(jb.ping(), ProtocolError);
  });

  it("an error reply with a nil id ends the session, quoting the sidecar", async () => {
    const a = jb.ping();
    const ra = await fake.next();
    await ra.reply(encode({ id: null, ok: false, error: { type: "ProtocolError", message: "envelope is not valid msgpack", traceback: "" } }));
    const sa = await settles(a);
    assert.ok(!sa.ok && sa.error instanceof ProtocolError && /envelope is not valid msgpack/.test((sa.error as Error).message));
  });

  it("settles every call, whatever comes back (fast-check)", async () => {
    const envelope = fc.oneof(
      fc.constant("id"),
      fc.constant("nil-id"),
      fc.constant("no-id"),
      fc.constant("event"),
    );
    const body = fc.oneof(
      fc.anything({ maxDepth: 3 }),
      fc.record({ ok: fc.boolean(), result: fc.anything({ maxDepth: 2 }) }),
      fc.record({ ok: fc.constant(false), error: fc.anything({ maxDepth: 2 }) }),
    );
    await fc.assert(
      fc.asyncProperty(envelope, body, fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 3 }), fc.boolean(), async (kind, b, extra, truncate) => {
        const fresh = await fakeSidecar();
        const s = await connect({ url: fresh.url, handshakeTimeoutMs: 10_000, protocolGraceMs: 100 });
        try {
          const call = s.ping();
          const r = await fresh.next();
          const fields = typeof b === "object" && b !== null && !Array.isArray(b) ? (b as Record<string, unknown>) : { result: b };
          const env = kind === "id" ? { ...fields, id: r.id } : kind === "nil-id" ? { ...fields, id: null } : kind === "event" ? { event: "callbacks", ...fields } : fields;
          let head: Frame;
          try {
            head = pack(env);
          } catch {
            head = Buffer.from([0xc1]);
          }
          if (truncate && head.length > 1) head = head.subarray(0, head.length - 1);
          await r.reply([head, ...extra.map((x) => Buffer.from(x))]);
          // Then the real reply: the call settles with it, or with the ProtocolError the first message earned.
          if (kind !== "id") await r.reply(encode({ id: r.id, ok: true, result: "pong" }));
          const out = await settles(call);
          if (!out.ok) assert.ok(out.error instanceof JaxBridgeError, `a ${String((out.error as Error)?.name)}: ${String(out.error)}`);
        } finally {
          await s.close();
          fresh.close();
        }
      }),
      { numRuns: 30, seed: 13 },
    );
  });
});

describe("the codec on random frames (fast-check)", () => {
  it("decodes or throws ProtocolError, never anything else", () => {
    const frames = fc.array(fc.uint8Array({ maxLength: 200 }), { minLength: 1, maxLength: 4 });
    fc.assert(
      fc.property(frames, (fs) => {
        try {
          decode(fs.map((f) => Buffer.from(f)), null);
        } catch (e) {
          assert.ok(e instanceof ProtocolError, `${(e as Error).name}: ${(e as Error).message}`);
        }
      }),
      { numRuns: 3000, seed: 13 },
    );
  });

  it("decodes random well-formed envelopes with array and handle exts, or refuses them with ProtocolError", () => {
    const ext = (type: number, payload: unknown) => ({ type, payload });
    const leaf = fc.oneof(
      fc.anything({ maxDepth: 1 }),
      fc.tuple(fc.constantFrom("float32", "int8", "bool", "nope"), fc.array(fc.integer({ min: -1, max: 5 }), { maxLength: 3 }), fc.integer({ min: -1, max: 4 }), fc.integer({ min: -1, max: 3 })).map((f) => ext(1, f)),
      fc.tuple(fc.anything({ maxDepth: 1 })).map((f) => ext(2, f)),
      fc.tuple(fc.anything({ maxDepth: 1 })).map((f) => ext(4, f)),
    );
    fc.assert(
      fc.property(fc.dictionary(fc.string({ maxLength: 4 }), leaf, { maxKeys: 4 }), fc.array(fc.uint8Array({ maxLength: 32 }), { maxLength: 4 }), (value, extra) => {
        const packr = new Packr({ useRecords: false });
        const exts: Frame[] = [];
        const toWire = (v: unknown): unknown => {
          if (v && typeof v === "object" && "type" in v && "payload" in v) {
            const { type, payload } = v as { type: number; payload: unknown };
            exts.push(Buffer.alloc(0));
            return { __ext: [type, raw.pack(payload)] };
          }
          return v;
        };
        const mapped = Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toWire(v)]));
        let head: Buffer;
        try {
          head = Buffer.from(packr.pack({ id: 1, ok: true, result: mapped }));
        } catch {
          return;
        }
        try {
          decode([head, ...extra.map((x) => Buffer.from(x))], null);
        } catch (e) {
          assert.ok(e instanceof ProtocolError, `${(e as Error).name}: ${(e as Error).message}`);
        }
      }),
      { numRuns: 1000, seed: 13 },
    );
  });
});
