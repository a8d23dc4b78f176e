// piscina, as dplab's start-up snapshot sees it (scripts/snapshot.js bundles this file in its
// place). A snapshot is built with Node's own modules only, and piscina starts its threads from
// files of its own, so it cannot be bundled: the real one is required when the first pool is made,
// from node_modules beside dist/, with the require cli/snapshot.ts made once the snapshot was
// restored. dplab only constructs pools (src/pipeline/parallel.ts), so a constructor is enough.
let Real = null;
class Piscina {
  constructor(...args) {
    Real ??= globalThis.__dplabRequire('piscina').Piscina;
    return new Real(...args);
  }
}
module.exports = { Piscina };
