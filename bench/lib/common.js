// Helpers shared by the benchmarks (in a subfolder so bench/run.js does not run it as one).
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
/** The build under test: dist/, or another one named by DPLAB_DIST (to compare two builds). */
export const DIST = resolve(process.env.DPLAB_DIST ?? join(HERE, '../../dist'));
/** Generated inputs and JSON results (git-ignored). */
export const OUT = join(HERE, '../out');

const { writeSynthPcap } = await import(pathToFileURL(join(DIST, 'gen/synth.js')).href);

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
