/**
 * The entry of dplab's start-up snapshot (scripts/snapshot.js bundles this file with the modules
 * it reaches into dist/dplab.cjs, then has node run it once and save the heap as dist/dplab.blob).
 * `dplab` (the shell line of bin/dplab.js) starts node from that heap when the blob is there:
 * the modules below are already loaded and initialised, so a start pays no module resolution,
 * file reads or top-level compiles. On this project's 2-vCPU VM a one-packet `replay` went 97 -> 50
 * ms and the README's `compare` of the demo capture 297 -> 213 ms (DESIGN.md "Ninth pass").
 *
 * What the snapshot must not hold, and does not: a SharedArrayBuffer (none may exist while it is
 * built: the modules make theirs on first use), a module outside Node's own (piscina is required
 * when the first pool starts, see scripts/snapshot-piscina.cjs), anything of the machine or the
 * run (paths of the checkout aside, checked below; the environment, the terminal and the clock
 * are read when used). Nor may its code import(): node gives a snapshot no way to load a module
 * at run time, so the modules dplab loads on demand are all here, given to pipeline/lazy.ts.
 * Outside a snapshot build this module does nothing.
 */
import { realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startupSnapshot } from 'node:v8';
// Loaded and initialised in the snapshot: every command, the worker pool and every stage. What
// dplab otherwise import()s when needed is given to lazyModule (see pipeline/lazy.ts).
import * as parallel from '../pipeline/parallel.js';
import { giveModule } from '../pipeline/lazy.js';
import '../stages/index.js';
import * as calibrate from './calibrate.js';
import * as compare from './compare.js';
import * as decode from './decode.js';
import * as gen from './gen.js';
import * as live from './live.js';
import { runCli } from './main.js';
import * as profiles from './profiles.js';
import * as replay from './replay.js';
import * as sweep from './sweep.js';
import * as trace from './trace.js';

/** dist/ as the snapshot was built (import.meta.url is dist/cli/main.js's in the bundle). */
const DIST = join(dirname(fileURLToPath(import.meta.url)), '..');

if (startupSnapshot.isBuildingSnapshot()) {
  startupSnapshot.setDeserializeMainFunction(() => {
    // The blob holds this checkout's paths (profiles/, the worker's file): run from another
    // place, it would read that one's. Say so rather than run the wrong files.
    const at = process.execArgv.indexOf('--snapshot-blob');
    const blob = at >= 0 ? resolve(process.execArgv[at + 1] ?? '') : '';
    let here = '';
    try { here = realpathSync(dirname(blob)); } catch { /* reported below */ }
    if (here !== DIST) {
      process.stderr.write(`dplab: the start-up snapshot ${blob} was built in ${DIST}: run "npm run build" in ${join(dirname(blob), '..')}, or set DPLAB_NO_SNAPSHOT=1\n`);
      process.exitCode = 1;
      return;
    }
    (globalThis as { __dplabRequire?: NodeJS.Require }).__dplabRequire = createRequire(join(DIST, 'cli', 'main.js'));
    for (const [key, module] of Object.entries({ calibrate, compare, decode, gen, live, profiles, replay, sweep, trace })) giveModule(`cli/${key}`, module);
    giveModule('pipeline/parallel', parallel);
    // node --snapshot-blob BLOB -- ARGS: the arguments follow node's own path.
    void runCli(process.argv.slice(1));
  });
}
