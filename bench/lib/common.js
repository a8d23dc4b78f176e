// Helpers shared by the benchmarks (in a subfolder so bench/run.js does not run it as one).
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = dirname(fileURLToPath(import.meta.url));
/** The build under test: dist/, or another one named by DPLAB_DIST (to compare two builds). */
export const DIST = resolve(process.env.DPLAB_DIST ?? join(HERE, '../../dist'));
/**
 * dplab's command line as a user runs it (`dplab`, `npx dplab`): bin/dplab.js run as a program, so
 * its launcher line sets what it sets (huge pages for malloc) before node starts, on the build
 * under test: children inherit DPLAB_DIST, which bin/dplab.js follows.
 */
export const DPLAB = join(HERE, '../../bin/dplab.js');
process.env.DPLAB_DIST = DIST;
/** Generated inputs and JSON results (git-ignored). */
export const OUT = join(HERE, '../out');

/** A module of the build under test, by its path under dist/ ('pipeline/run.js'). */
export const loadDist = async (m) => import(pathToFileURL(join(DIST, m)).href);

const { writeSynthPcap } = await loadDist('gen/synth.js');

/**
 * The options every capture benchmark takes: [--rounds N] [--packets N] [--json FILE] (-h prints
 * the usage line and exits). Creates OUT. Returns { rounds, packets, json }.
 */
export function benchArgs(script, defaultPackets) {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '3' },
      packets: { type: 'string', default: String(defaultPackets) },
      json: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(`node bench/${script} [--rounds N] [--packets N] [--json FILE]\n`);
    process.exit(0);
  }
  mkdirSync(OUT, { recursive: true });
  return { rounds: Number(values.rounds), packets: Number(values.packets), json: values.json };
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** The capture for these generator options: generated once, regenerated when the generator changes. */
export function synthCapture(gen) {
  mkdirSync(OUT, { recursive: true });
  const name = `synth-${Object.entries(gen).map(([k, v]) => `${k}${v}`).join('-')}`;
  const file = join(OUT, `${name}.pcap`);
  const metaFile = join(OUT, `${name}.json`);
  const generator = createHash('sha256').update(readFileSync(join(DIST, 'gen/synth.js'))).digest('hex').slice(0, 16);
  const key = JSON.stringify({ gen, generator });
  if (existsSync(file) && existsSync(metaFile)) {
    const meta = JSON.parse(readFileSync(metaFile, 'utf8'));
    if (meta.key === key && statSync(file).size === meta.summary.bytes) return { file, summary: meta.summary };
  }
  process.stderr.write(`generating ${file} ...\n`);
  const summary = writeSynthPcap(file, gen);
  writeFileSync(metaFile, JSON.stringify({ key, summary }, null, 2) + '\n');
  return { file, summary };
}
