// node:worker_threads, as dplab's start-up snapshot sees it (scripts/snapshot.js bundles this file
// in its place): the real module is loaded at its first use, after the snapshot was restored. Loaded
// while the snapshot is built, where no SharedArrayBuffer exists, node's worker module sets up no
// shared cwd counter, and every thread started from the snapshot then failed in process.cwd()
// ("undefined is not an integer typed array"). Getters, not a Proxy: the bundle copies a CommonJS
// module's own properties into its import of it.
const NAMES = ['Worker', 'isMainThread', 'parentPort', 'workerData', 'threadId', 'resourceLimits', 'SHARE_ENV',
  'MessageChannel', 'MessagePort', 'BroadcastChannel', 'markAsUntransferable', 'moveMessagePortToContext',
  'receiveMessageOnPort', 'getEnvironmentData', 'setEnvironmentData'];
for (const name of NAMES) {
  Object.defineProperty(module.exports, name, { enumerable: true, get: () => globalThis.__dplabRequire('node:worker_threads')[name] });
}
