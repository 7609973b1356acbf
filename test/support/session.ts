import { connect, type ConnectOptions, type Session } from "../../src/session/session.js";

/** One embedded sidecar per test file: spawning one costs seconds (JAX import). */
export function useSession(opts: ConnectOptions = {}): () => Session {
  let jb: Session | undefined;
  before(async function () {
    this.timeout(180_000);
    jb = await connect(opts);
  });
  after(async () => {
    await jb?.close();
  });
  return () => {
    if (!jb) throw new Error("session not started");
    return jb;
  };
}
