/**
 * Sessions that survive what a network does to them, and end clearly when
 * the sidecar does (issue 13): a pause longer than the heartbeat timeout but
 * shorter than the grace loses nothing (calls made meanwhile complete, once
 * each, arrays intact); a hung run restarts the sidecar under `serve`'s
 * supervisor and the client learns why; a sidecar restarted under the
 * client's feet is told apart from a blip by its instance; calls in flight
 * at close() get SessionClosedError.
 */
import assert from "node:assert/strict";
import { array, type DeviceArray, type NDArray } from "../../src/index.js";
import { connect } from "../../src/session/session.js";
import { SessionClosedError, SidecarRestartedError } from "../../src/values/errors.js";
import { jit } from "../../src/trace/jit.js";
import { whileFlat } from "../../src/trace/lib/control.js";
import type { Tracer } from "../../src/trace/tracer.js";
import { type SidecarProcess, startSidecar } from "../conformance/support.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("sessions that survive, and end clearly", function () {
  this.timeout(300_000);

  describe("a tcp sidecar paused longer than the heartbeat timeout", () => {
    let s: SidecarProcess | undefined;
    after(async () => {
      await s?.stop();
    });

    it("resumes the session: calls made during the pause complete once each, arrays intact", async () => {
      s = await startSidecar(["--endpoint", "tcp://127.0.0.1:*"]);
      const jb = await connect({ url: s.url, heartbeatMs: 500, reconnectGraceMs: 60_000 });
      try {
        const x = (await jb.put(array([1, 2, 3], "float32"))) as DeviceArray;
        const instance = jb.instance;
        const pid = jb.info.pid;
        process.kill(pid, "SIGSTOP");
        let resumed = false;
        try {
          const during = Promise.all([jb.call<DeviceArray>("jax.numpy.add", x, 1), x.toHost(), jb.put(array([9], "int32"))]);
          during.catch(() => {});
          // ZMTP gives up on the connection after 1.5 s of silence: well inside this pause.
          await sleep(6000);
          process.kill(pid, "SIGCONT");
          resumed = true;
          const [y, xh, z] = await during;
          assert.deepEqual((await y.toHost()).toList(), [2, 3, 4]);
          assert.deepEqual(xh.toList(), [1, 2, 3]);
          assert.deepEqual((await (z as DeviceArray).toHost()).toList(), [9]);
        } finally {
          if (!resumed) process.kill(pid, "SIGCONT");
        }
        assert.equal(jb.instance, instance);
        const st = await jb.stats();
        assert.equal(st.handles, 3, "a request resent after the reconnect ran twice, or an array was lost");
        assert.equal(st.sessions, 1);
      } finally {
        await jb.close();
      }
    });
  });

  describe("under serve's supervisor", () => {
    let s: SidecarProcess | undefined;
    before(async function () {
      this.timeout(300_000);
      s = await startSidecar(["--endpoint", "tcp://127.0.0.1:*", "--max-run-seconds", "3"]);
    });
    after(async () => {
      await s?.stop();
    });

    async function connectWhenBack() {
      const t0 = Date.now();
      for (;;) {
        try {
          return await connect({ url: s!.url, handshakeTimeoutMs: 5000 });
        } catch (e) {
          if (Date.now() - t0 > 120_000) throw e;
          await sleep(500);
        }
      }
    }

    it("a run past --max-run-seconds restarts the sidecar, and the client gets SidecarRestartedError naming the cause", async () => {
      const jb = await connect({ url: s!.url });
      const other = await connect({ url: s!.url });
      const endless = jit((x: Tracer | NDArray) => whileFlat((c) => c.ge(c), (c) => [c.add(1)], [x as Tracer])[0]!, { session: jb });
      try {
        const t0 = Date.now();
        const run = endless(array([0], "float32", []) as NDArray);
        await sleep(1000);
        await other.ping(); // another session is served while the run hangs
        await assert.rejects(run, (e: unknown) => e instanceof SidecarRestartedError && /--max-run-seconds=3/.test(String(e.reason)) && /restarting/.test((e as Error).message));
        assert.ok(Date.now() - t0 < 60_000);
        await assert.rejects(other.ping(), SidecarRestartedError);
      } finally {
        await jb.close();
        await other.close();
      }
      const again = await connectWhenBack();
      try {
        assert.match(String(again.info.restarted?.cause), /--max-run-seconds=3/);
        await again.ping();
      } finally {
        await again.close();
      }
    });

    it("a sidecar killed and restarted under the client is told apart from a blip by its instance", async () => {
      const jb = await connectWhenBack();
      try {
        const x = await jb.put(array([1], "float32"));
        assert.ok(x);
        process.kill(jb.info.pid, "SIGKILL");
        const t0 = Date.now();
        let err: unknown;
        for (;;) {
          try {
            await jb.ping({ timeoutMs: 5000 });
          } catch (e) {
            if (e instanceof SidecarRestartedError) {
              err = e;
              break;
            }
          }
          assert.ok(Date.now() - t0 < 120_000, "the client never learned of the restart");
          await sleep(500);
        }
        assert.match(String((err as SidecarRestartedError).reason), /SIGKILL/);
        assert.notEqual((err as SidecarRestartedError).instance, (err as SidecarRestartedError).previousInstance);
      } finally {
        await jb.close();
      }
    });
  });

  it("calls in flight at close() reject with SessionClosedError", async () => {
    const jb = await connect();
    const big = array(Array.from({ length: 1200 * 1200 }, (_, i) => Math.sin(i)), "float64", [1200, 1200]);
    const dev = await jb.put(big);
    const pending = jb.call("jax.numpy.linalg.svd", dev);
    pending.catch(() => {});
    await sleep(100);
    await jb.close();
    await assert.rejects(pending, (e: unknown) => e instanceof SessionClosedError);
  });
});
