// Runs every benchmark in bench/ (every .js file but this one), in name order, each in its own
// Node process with --expose-gc so a benchmark can collect garbage between timed runs.
//
//   node bench/run.js                       all of them
//   node bench/run.js read                  only bench/read.js
//   node bench/run.js --json-dir bench/out  each writes its results to bench/out/NAME.json
// Other options (--rounds 3, ...) are passed on to every benchmark.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const names = [];
const pass = [];
let jsonDir = null;
for (let k = 0; k < argv.length; k++) {
  const a = argv[k];
  if (a === '--json-dir') jsonDir = argv[++k];
  else if (a.startsWith('-')) { pass.push(a); if (argv[k + 1] !== undefined && !argv[k + 1].startsWith('-')) pass.push(argv[++k]); }
  else names.push(a.replace(/\.js$/, ''));
}

const all = readdirSync(here).filter((f) => f.endsWith('.js') && f !== 'run.js').sort().map((f) => basename(f, '.js'));
const unknown = names.filter((n) => !all.includes(n));
if (unknown.length) {
  process.stderr.write(`bench: no benchmark named ${unknown.join(', ')}; there are: ${all.join(', ')}\n`);
  process.exit(1);
}
let failed = 0;
for (const name of names.length ? names : all) {
  process.stdout.write(`\n=== bench/${name}.js ===\n`);
  const extra = jsonDir ? ['--json', join(jsonDir, `${name}.json`)] : [];
  const r = spawnSync(process.execPath, ['--expose-gc', join(here, `${name}.js`), ...pass, ...extra], { stdio: 'inherit' });
  if (r.status !== 0) { failed++; process.stderr.write(`bench/${name}.js failed (exit ${r.status ?? r.signal})\n`); }
}
process.exit(failed ? 1 : 0);
