// One process at a time on a shared folder (a checkout's .venv, one
// environment in the per-user cache): a file created with O_EXCL that holds
// the owner's pid and host. A lock whose owner died on this host is taken
// over; one held from another host (a shared home) is waited for.
import { closeSync, mkdirSync, openSync, rmSync, statSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { dirname } from "node:path";
import { readText, sleep } from "./common.mjs";

function ageMs(path) {
  try {
    return Date.now() - statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}

function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === "EPERM";
  }
}

/**
 * Remove a lock whose owner died, unless it changed meanwhile. Two waiters
 * may see the same stale lock; without the breaker file the slower one could
 * delete the lock the faster one has just made.
 */
function breakStale(path, seen) {
  const breaker = `${path}.break`;
  try {
    closeSync(openSync(breaker, "wx"));
  } catch (e) {
    if (e.code !== "EEXIST") throw e;
    if (ageMs(breaker) > 10_000) rmSync(breaker, { force: true }); // its maker died mid-break
    return;
  }
  try {
    if ((readText(path) ?? "") === seen) rmSync(path, { force: true });
  } finally {
    rmSync(breaker, { force: true });
  }
}

/**
 * Wait for and take the lock at `path`; resolves to a release function
 * (idempotent; it removes the file only while it is still ours).
 * `onWait(holder)` is called once if someone else holds it.
 */
export async function acquireLock(path, { onWait = () => {}, giveUpMs = 45 * 60 * 1000 } = {}) {
  mkdirSync(dirname(path), { recursive: true });
  let waitedSince = null;
  for (;;) {
    try {
      const fd = openSync(path, "wx");
      writeSync(fd, `${process.pid}\n${hostname()}\n`);
      closeSync(fd);
      let held = true;
      return () => {
        if (!held) return;
        held = false;
        try {
          if (readText(path)?.split("\n")[0] === String(process.pid)) rmSync(path, { force: true });
        } catch {
          /* best effort */
        }
      };
    } catch (e) {
      if (e.code !== "EEXIST") throw e;
    }
    const seen = readText(path) ?? "";
    const [pidText, host] = seen.split("\n");
    const pid = Number(pidText);
    // An empty or partial file is one being written right now, unless it has been so for a while.
    const complete = Boolean(pid) && Boolean(host);
    if (complete ? host === hostname() && (pid === process.pid || !pidAlive(pid)) : ageMs(path) > 5000) {
      breakStale(path, seen);
      continue;
    }
    if (waitedSince === null) {
      waitedSince = Date.now();
      onWait(`pid ${pidText || "?"} on ${host || "?"}`);
    } else if (Date.now() - waitedSince > giveUpMs) {
      throw new Error(`gave up waiting for ${path} (held by pid ${pidText} on ${host})`);
    }
    await sleep(500);
  }
}
