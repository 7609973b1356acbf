/**
 * Python objects on the TypeScript side. A PyRef is an opaque Python object
 * held in the sidecar (an activation function, an env): a static leaf here.
 * An equinox Module arrives as a RemoteModule: a Module subclass made per
 * Python structure, so two modules of the same structure share a class and
 * compare as equal structures, while sending one back lets the sidecar rebuild
 * the exact Python object from its handles. (The proxies `jb.import`
 * returns are the session's: src/session/py-proxy.ts.)
 */
import { inspect } from "node:util";
import { Module } from "./module.js";
import type { HandleOwner } from "./device-array.js";

export class PyRef {
  /** The sidecar's id for the object (shared id space with array handles). */
  readonly id: number;
  /** The object's qualified Python type, e.g. `jax._src.custom_derivatives.custom_jvp`. */
  readonly pythonType: string;
  /** A short repr, for printing. */
  readonly repr: string;
  readonly owner: HandleOwner;

  constructor(owner: HandleOwner, id: number, pythonType: string, repr: string) {
    this.owner = owner;
    this.id = id;
    this.pythonType = pythonType;
    this.repr = repr;
    registry.register(this, { owner, id });
  }

  toString(): string {
    return `PyRef(${this.repr})`;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

const registry = new FinalizationRegistry<{ owner: HandleOwner; id: number }>(({ owner, id }) => {
  if (!owner.closed) owner.release(id);
});

/** Base of the classes made for remote equinox Modules. */
export class RemoteModule extends Module {
  /** Key of the module's tree structure in the sidecar (lerax's fingerprint, hex). */
  static remoteKey = "";
  /** The Python class, e.g. `equinox.nn._mlp.MLP`. */
  static pythonClass = "";
  /** The sidecar instance the structure key belongs to. */
  static remoteInstance = "";
}

const classes = new Map<string, typeof RemoteModule>();

/** The TypeScript class for a Python module structure (one per sidecar instance and structure). */
export function remoteModuleClass(instance: string, key: string, qualname: string): typeof RemoteModule {
  const cacheKey = `${instance}\u0000${key}`;
  let cls = classes.get(cacheKey);
  if (cls === undefined) {
    const made = class extends RemoteModule {};
    made.remoteKey = key;
    made.pythonClass = qualname;
    made.remoteInstance = instance;
    Object.defineProperty(made, "name", { value: qualname.split(".").pop() ?? "RemoteModule" });
    cls = made;
    classes.set(cacheKey, cls);
  }
  return cls;
}

export function makeRemoteModule(instance: string, key: string, qualname: string, fields: Record<string, unknown>): RemoteModule {
  const cls = remoteModuleClass(instance, key, qualname);
  return Module.build(cls.prototype, Object.keys(fields), Object.values(fields)) as RemoteModule;
}
