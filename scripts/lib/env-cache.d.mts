// Types for env-cache.mjs, which src/python-env.ts imports (the setup script
// and the library must name environments the same way).
export declare const ENV_SCHEMA: string;
export declare const READY_FILE: string;
export declare function venvPython(dir: string): string;
export declare function cacheRoot(env?: NodeJS.ProcessEnv): string;
export declare function envsRoot(env?: NodeJS.ProcessEnv): string;
export declare function isCheckout(root: string): boolean;
export declare function envInputs(root: string): string[];
export declare function packageHash(root: string): string;
export declare function envName(hash: string, version: readonly number[]): string;
export interface ReadyEnv {
  /** The environment's Python executable. */
  python: string;
  /** The virtual environment's folder. */
  dir: string;
  /** ready.json as setup wrote it. */
  ready: { schema: string; env: string; python?: { full: string; exe: string; path: string }; installer?: string; jaxbridge?: string; hash?: string; summary?: string; created?: string };
}
export declare function readReady(keyDir: string): ReadyEnv | null;
export declare function findEnv(root: string, env?: NodeJS.ProcessEnv): (ReadyEnv & { keyDir: string }) | null;
