/**
 * Files that are never half-written: the bytes go to a temp file in the same
 * folder, which is fsynced and renamed over the target, then the folder is
 * fsynced. A failure or a crash leaves the old file or the new one.
 */
import { randomBytes } from "node:crypto";
import { mkdir, open, rename, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/**
 * Write `chunks` to `target` atomically: into a temp file in the same folder
 * (`.<name>.<pid>.<random>.tmp`), fsync, rename over `target`, fsync the
 * folder. A failure (or crash) leaves the old file or the new one, never
 * part of one; on a failure the temp file is removed.
 */
export async function writeFileAtomic(target: string, chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<void> {
  const dir = dirname(target);
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `.${basename(target)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  const fh = await open(tmp, "wx");
  let done = false;
  try {
    const pending: Uint8Array[] = [];
    let size = 0;
    const flush = async (): Promise<void> => {
      if (size === 0) return;
      const buf = pending.length === 1 ? pending[0]! : Buffer.concat(pending);
      pending.length = 0;
      size = 0;
      for (let at = 0; at < buf.length; ) {
        const { bytesWritten } = await fh.write(buf, at, buf.length - at);
        at += bytesWritten;
      }
    };
    for await (const c of chunks) {
      if (c.length >= 1 << 20) {
        await flush();
        pending.push(c);
        size = c.length;
        await flush();
        continue;
      }
      pending.push(new Uint8Array(c));
      size += c.length;
      if (size >= 1 << 20) await flush();
    }
    await flush();
    await fh.sync();
    done = true;
  } finally {
    await fh.close().catch(() => undefined);
    if (!done) await unlink(tmp).catch(() => undefined);
  }
  try {
    await rename(tmp, target);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  try {
    const d = await open(dir, "r");
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch {
    // Some filesystems refuse fsync on a folder; the rename itself is atomic.
  }
}

