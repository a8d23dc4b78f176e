/**
 * Modules dplab loads only when a run needs them (a command's code, the worker pool), by import()
 * or from what was given beforehand. dplab's start-up snapshot (cli/snapshot.ts) holds every such
 * module already loaded, and node cannot import() a module from a snapshot's code at run time, so
 * it gives them here first. Keys are the module's path under dist/, without ".js".
 */
const given = new Map<string, unknown>();

export function giveModule(key: string, module: unknown): void {
  given.set(key, module);
}

/** The module given for `key`, else what `load` imports. */
export async function lazyModule<T>(key: string, load: () => Promise<T>): Promise<T> {
  return (given.get(key) as T | undefined) ?? load();
}
