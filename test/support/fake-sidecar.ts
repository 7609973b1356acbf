/**
 * A sidecar that is not one: a ROUTER that answers `hello` as a real
 * sidecar would (the sample echoed) and hands every other request to the
 * test, which replies with whatever frames it likes. For the client's
 * distrust of replies, without Python.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Router } from "zeromq";
import { type Frame, PROTOCOL_VERSION, decode, encode } from "../../src/wire/protocol.js";

export interface FakeRequest {
  id: number;
  op: string;
  /** Reply with these frames (the envelope first). */
  reply(frames: Frame[]): Promise<void>;
}

export interface FakeSidecar {
  url: string;
  /** The next request that is not `hello`. */
  next(): Promise<FakeRequest>;
  close(): void;
}

export async function fakeSidecar(): Promise<FakeSidecar> {
  const dir = mkdtempSync(join(tmpdir(), "jaxbridge-fake-"));
  const url = `ipc://${join(dir, "s.sock")}`;
  const router = new Router({ linger: 0 });
  await router.bind(url);
  const queue: FakeRequest[] = [];
  const waiters: ((r: FakeRequest) => void)[] = [];
  let sending = Promise.resolve();
  const send = (frames: Frame[]): Promise<void> => {
    sending = sending.then(() => router.send(frames)).catch(() => {});
    return sending;
  };
  void (async () => {
    try {
      for await (const [ident, ...frames] of router) {
        const env = decode(frames as Frame[], null).envelope;
        const id = env.id as number;
        if (env.op === "hello") {
          const result = {
            protocol: PROTOCOL_VERSION,
            server: "fake",
            python: "0",
            jax: "0",
            jaxlib: "0",
            backend: "cpu",
            devices: [],
            x64: true,
            instance: "fake",
            pid: 0,
            max_message_bytes: 1 << 30,
            max_frame_bytes: 1 << 24,
            limits: {},
            lease_seconds: null,
            restarted: null,
            resumed: env.resume === "fake",
            sample: env.sample,
          };
          await send([ident!, ...encode({ id, ok: true, result })]);
          continue;
        }
        if (env.op === "close") {
          await send([ident!, ...encode({ id, ok: true, result: { handles: 0, objects: 0 } })]);
          continue;
        }
        const req: FakeRequest = { id, op: String(env.op), reply: (out) => send([ident!, ...out]) };
        const w = waiters.shift();
        if (w) w(req);
        else queue.push(req);
      }
    } catch {
      // closed
    }
  })();
  return {
    url,
    next: () => new Promise((resolve) => (queue.length ? resolve(queue.shift()!) : waiters.push(resolve))),
    close: () => {
      router.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
