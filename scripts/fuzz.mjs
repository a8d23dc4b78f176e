#!/usr/bin/env node
/**
 * Long fuzzing runs of the capture readers and the decoder: the properties of test/fuzz.test.ts
 * (scripts/fuzz-lib.mjs) on the built code in dist/ (npx tsc -p tsconfig.json first).
 *
 *   node scripts/fuzz.mjs [--runs N] [--seed S] [--only random,mutated,truncated,large,decoder,stream]
 *                         [--max-seed-size BYTES] [--time-limit MS]
 *
 * --runs is per property (default 10000); the seed defaults to the clock and is printed. The cases
 * run in a worker thread: a case that hangs (no answer within 10 x --time-limit) is stopped and
 * saved. Every counterexample (shrunk by fast-check) is written as a capture file under a new
 * directory in the system's temp folder, whose path is printed; exit status 1 when one was found.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const PROPERTIES = ['random', 'mutated', 'truncated', 'large', 'decoder', 'stream'];

if (isMainThread) main();
else await worker(workerData);

function main() {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '10000' },
      seed: { type: 'string' },
      only: { type: 'string', default: PROPERTIES.join(',') },
      'max-seed-size': { type: 'string', default: '30000' },
      'time-limit': { type: 'string', default: '1000' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(2, 14).map((l) => l.replace(/^ \*\/?\s?/, '')).join('\n'));
    return;
  }
  const runs = Number(values.runs);
  const seed = values.seed === undefined ? Date.now() % 2 ** 31 : Number(values.seed);
  const timeLimitMs = Number(values['time-limit']);
  const only = values.only.split(',');
  const bad = only.find((p) => !PROPERTIES.includes(p));
  if (bad !== undefined || !Number.isInteger(runs) || runs < 1 || !Number.isInteger(seed)) {
    console.error(bad !== undefined ? `fuzz: --only: no property ${bad} (there are ${PROPERTIES.join(', ')})` : 'fuzz: --runs and --seed take whole numbers');
    process.exitCode = 2;
    return;
  }
  const work = mkdtempSync(join(tmpdir(), 'dplab-fuzz-cases-'));
  // The scratch files go however the run ends (a closed pipe on stdout included).
  process.on('exit', () => rmSync(work, { recursive: true, force: true }));
  process.stdout.on('error', () => process.exit(2));
  const out = join(tmpdir(), `dplab-fuzz-${seed}`);
  console.log(`fuzzing ${only.join(', ')}: ${runs} cases each, seed ${seed} (repeat with --seed ${seed})`);

  const w = new Worker(fileURLToPath(import.meta.url), {
    workerData: { runs, seed, only, dir: work, out, maxSeedSize: Number(values['max-seed-size']), timeLimitMs },
  });
  let current = null;
  let last = Date.now();
  let failed = false;
  w.on('message', (m) => {
    last = Date.now();
    if (m.type === 'case') current = m;
    else if (m.type === 'log') console.log(m.text);
    else if (m.type === 'failed') failed = true;
  });
  const hangAfter = 10 * timeLimitMs;
  const timer = setInterval(() => {
    if (Date.now() - last < hangAfter) return;
    clearInterval(timer);
    failed = true;
    mkdirSync(out, { recursive: true });
    const saved = current ? join(out, `hang-${current.property}-${seed}.${current.file.split('.').pop()}`) : null;
    if (saved) copyFileSync(current.file, saved);
    console.log(`HANG: a case of ${current?.property} did not finish within ${hangAfter} ms (profile ${current?.profile}, batch ${current?.batchSize})`);
    if (saved) console.log(`  its input is saved as ${saved}`);
    void w.terminate();
  }, 500);
  w.on('error', (e) => { failed = true; console.log(`worker failed: ${e.stack ?? e}`); });
  w.on('exit', () => {
    clearInterval(timer);
    if (failed) console.log(`counterexamples are in ${out}`);
    process.exitCode = failed ? 1 : 0;
  });
}

async function worker({ runs, seed, only, dir, out, maxSeedSize, timeLimitMs }) {
  const log = (text) => parentPort.postMessage({ type: 'log', text });
  const dist = (p) => import(join(ROOT, 'dist', p));
  const [fc, { createFuzz }, { CaptureError }, { openCapture }, { Batch }, { decodeBatch, decodePacket }, { Pipeline }, { builtinProfiles, loadProfile }, { buildStages }, { runCapture }] = await Promise.all([
    import('fast-check').then((m) => m.default), import('./fuzz-lib.mjs'), dist('capture/errors.js'), dist('capture/open.js'), dist('packet/batch.js'), dist('packet/decode.js'),
    dist('pipeline/runner.js'), dist('pipeline/profile.js'), dist('pipeline/registry.js'), dist('pipeline/run.js'),
  ]);
  await dist('stages/index.js');
  const captures = join(ROOT, 'captures');
  const rows = readFileSync(join(captures, 'INDEX.tsv'), 'utf8').trim().split('\n').slice(1).map((l) => l.split('\t')[0]);
  const seeds = rows.filter((f) => !f.startsWith('fuzz/') && !f.startsWith('malformed/'))
    .map((f) => ({ name: f, bytes: new Uint8Array(readFileSync(join(captures, f))) }))
    .filter((s) => s.bytes.length <= maxSeedSize);
  let property = '';
  // Tell the main thread which case is running, so a hang can be saved.
  const onCase = (file, c) => parentPort.postMessage({ type: 'case', file, property, profile: c.profile, batchSize: c.batchSize });
  const fuzz = createFuzz({ fc, runCapture, buildStages, loadProfile, builtinProfiles, CaptureError, openCapture, Pipeline, Batch, decodeBatch, decodePacket }, seeds, dir, { timeLimitMs, onCase, distDir: join(ROOT, 'dist') });
  log(`${seeds.length} seed captures of at most ${maxSeedSize} bytes`);
  const t0 = Date.now();
  for (const name of only) {
    property = name;
    const details = fc.check(fuzz.properties[name](), { seed, numRuns: runs });
    if (details.failed) {
      parentPort.postMessage({ type: 'failed' });
      mkdirSync(out, { recursive: true });
      const c = details.counterexample[0];
      const bytes = fuzz.bytesOf(c);
      const ext = bytes[0] === 0x0a && bytes[1] === 0x0d ? 'pcapng' : 'pcap';
      const file = join(out, `counterexample-${name}-${seed}.${ext}`);
      writeFileSync(file, bytes);
      const { bytes: _b, base: _base, recs: _recs, ...described } = c.input;
      writeFileSync(`${file}.json`, JSON.stringify({ property: name, seed, path: details.counterexamplePath, profile: c.profile, batchSize: c.batchSize, input: described, error: String(details.errorInstance?.message ?? details.error) }, null, 2));
      log(`FAILED ${name}: ${details.errorInstance?.message ?? details.error}`);
      log(`  seed ${seed}, path ${details.counterexamplePath}; profile ${c.profile}, batch size ${c.batchSize}; input ${JSON.stringify(described).slice(0, 400)}`);
      log(`  the input is saved as ${file} (${bytes.length} bytes; what it is: ${file}.json)`);
    } else {
      log(`${name}: ${details.numRuns} cases passed (${((Date.now() - t0) / 1000).toFixed(0)} s so far)`);
    }
  }
  log(`outcomes: ${JSON.stringify(fuzz.stats.outcomes)}`);
  log(`malformed reasons met: ${JSON.stringify(fuzz.stats.malformed)}`);
  log(`packets: ${fuzz.stats.packets}, forwarded ${fuzz.stats.forwarded}; slowest case ${fuzz.stats.slowestMs.toFixed(0)} ms (${fuzz.stats.slowest})`);
}
