// Runs every benchmark in bench/ (every .js file but this one), in name order, each in its own
// Node process with --expose-gc so a benchmark can collect garbage between timed runs.
//
//   node bench/run.js                       all of them
//   node bench/run.js read                  only bench/read.js
//   node bench/run.js --json-dir bench/out  each writes its results to bench/out/NAME.json
//   node bench/run.js --results DIR         latest.json and latest.md (and each NAME.json) in DIR, not bench/results
//   node bench/run.js --quick               a smoke run of the whole suite in a few minutes: each
//                                           benchmark gets fewer rounds and smaller inputs (QUICK)
// Other options (--rounds 3, ...) are passed on to every benchmark (after --quick's, so they win).
//
// Every run also writes bench/results/latest.json (each benchmark's JSON where it writes one, its
// exit status, the machine and its load) and bench/results/latest.md (what each one printed: the
// tables of medians and ratios to the peers, side by side as they ran in one process tree).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { summaryMarkdown, summaryRows } from './lib/summary.js';

const here = dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const names = [];
const pass = [];
let jsonDir = null;
let quick = false;
let resultsDir = null;
for (let k = 0; k < argv.length; k++) {
  const a = argv[k];
  if (a === '--json-dir') jsonDir = argv[++k];
  else if (a === '--quick') quick = true;
  else if (a === '--results') resultsDir = argv[++k];
  else if (a.startsWith('-')) { pass.push(a); if (argv[k + 1] !== undefined && !argv[k + 1].startsWith('-')) pass.push(argv[++k]); }
  else names.push(a.replace(/\.js$/, ''));
}

const all = readdirSync(here).filter((f) => f.endsWith('.js') && f !== 'run.js').sort().map((f) => basename(f, '.js'));
const unknown = names.filter((n) => !all.includes(n));
if (unknown.length) {
  process.stderr.write(`bench: no benchmark named ${unknown.join(', ')}; there are: ${all.join(', ')}\n`);
  process.exit(1);
}
// Benchmarks that write JSON when given --json FILE (the others print only).
const WRITES_JSON = new Set(['encrypt', 'flowtable', 'flowtrack', 'l7', 'micro', 'nat', 'pipe', 'pipeline', 'policy', 'read', 'route', 'speed', 'workers']);
// --quick: the options that make each benchmark a smoke run (options each already takes; a
// benchmark not named here runs as it is).
const QUICK = {
  calibrate: ['--rounds', '1', '--packets', '50000'],
  count: ['--rounds', '1', '--packets', '30000'],
  'decode-layout': ['--rounds', '3', '--packets', '100000'],
  encrypt: ['--rounds', '1', '--packets', '30000'],
  fanout: ['--rounds', '1'],
  flowtable: ['--rounds', '1'],
  flowtrack: ['--quick'],
  l7: ['--rounds', '1', '--packets', '30000'],
  micro: ['--quick'],
  nat: ['--rounds', '1', '--packets', '50000'],
  pipe: ['--packets', '1000000'],
  pipeline: ['--rounds', '1', '--part', 'a', '--no-fresh'],
  policy: ['--rounds', '1'],
  read: ['--rounds', '1', '--tshark-rounds', '0'],
  route: ['--rounds', '1', '--packets', '50000'],
  speed: ['--rounds', '1', '--packets', '300000', '--no-big'],
  workers: ['--rounds', '1', '--ipc-rounds', '3', '--profiles', 'ebpf'],
};
const results = resultsDir ? resolve(resultsDir) : join(here, 'results');
mkdirSync(results, { recursive: true });
const summary = { date: new Date().toISOString(), quick, cpus: cpus().length, cpu: cpus()[0]?.model, loadAtStart: loadavg(), benches: {} };
const head = `# bench results, ${summary.date}${quick ? ' (--quick: fewer rounds, smaller inputs; a smoke run, not figures to quote)' : ''}\n\n`
  + `${summary.cpus} CPUs (${summary.cpu}), load at start ${loadavg().map((x) => x.toFixed(2)).join(' ')}.\n`;
let md = '';
const rows = [];
const notes = [];
let failed = 0;
for (const name of names.length ? names : all) {
  process.stdout.write(`\n=== bench/${name}.js ===\n`);
  const jsonFile = join(jsonDir ?? results, `${name}.json`);
  const extra = WRITES_JSON.has(name) || jsonDir ? ['--json', jsonFile] : [];
  // Printed as it runs and kept for latest.md.
  const t0 = performance.now();
  const out = await new Promise((resolve) => {
    const opts = [...(quick ? QUICK[name] ?? [] : []), ...pass, ...extra];
    const child = spawn(process.execPath, ['--expose-gc', join(here, `${name}.js`), ...opts], { stdio: ['inherit', 'pipe', 'inherit'] });
    let text = '';
    child.stdout.on('data', (d) => { process.stdout.write(d); text += d; });
    child.on('close', (code, signal) => resolve({ text, code, signal }));
  });
  if (out.code !== 0) { failed++; process.stderr.write(`bench/${name}.js failed (exit ${out.code ?? out.signal})\n`); }
  let json = null;
  if (extra.length && existsSync(jsonFile)) { try { json = JSON.parse(readFileSync(jsonFile, 'utf8')); } catch { json = null; } }
  summary.benches[name] = { exit: out.code, seconds: +((performance.now() - t0) / 1000).toFixed(1), json };
  const sum = summaryRows(name, json);
  rows.push(...sum.rows);
  if (sum.note) notes.push(sum.note);
  if (out.code !== 0) notes.push(`${name}: FAILED (exit ${out.code ?? out.signal}), no figures`);
  md += `\n## bench/${name}.js${out.code !== 0 ? ` (FAILED, exit ${out.code ?? out.signal})` : ''}\n\n\`\`\`\n${out.text.trimEnd()}\n\`\`\`\n`;
}
summary.loadAtEnd = loadavg();
summary.summary = rows;
const top = `\n## Summary: medians, and ratios to the peers\n\nratio: how many times faster the "dplab" side is than the "peer" side (the peer's time or ns over dplab's;\n`
  + 'dplab\'s Mpps over the peer\'s). Where both sides are dplab designs, the first one named is in the "dplab" column.\n'
  + `Load at the end ${loadavg().map((x) => x.toFixed(2)).join(' ')}.\n\n${summaryMarkdown(rows)}${notes.map((x) => `\n- ${x}`).join('')}${notes.length ? '\n' : ''}`;
writeFileSync(join(results, 'latest.json'), JSON.stringify(summary, null, 2) + '\n');
writeFileSync(join(results, 'latest.md'), head + top + md);
process.stdout.write(`\nwrote ${join(results, 'latest.json')} and latest.md\n`);
process.exit(failed ? 1 : 0);
