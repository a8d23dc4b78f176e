// Runs every benchmark in bench/ (every .js file but this one), in name order, each in its own
// Node process with --expose-gc so a benchmark can collect garbage between timed runs.
//
//   node bench/run.js                       all of them
//   node bench/run.js read                  only bench/read.js
//   node bench/run.js --json-dir bench/out  each writes its results to bench/out/NAME.json
// Other options (--rounds 3, ...) are passed on to every benchmark.
//
// Every run also writes bench/results/latest.json (each benchmark's JSON where it writes one, its
// exit status, the machine and its load) and bench/results/latest.md (what each one printed: the
// tables of medians and ratios to the peers, side by side as they ran in one process tree).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
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
// Benchmarks that write JSON when given --json FILE (the others print only).
const WRITES_JSON = new Set(['flowtable', 'l7', 'nat', 'pipe', 'pipeline', 'policy', 'read', 'workers']);
const results = join(here, 'results');
mkdirSync(results, { recursive: true });
const summary = { date: new Date().toISOString(), cpus: cpus().length, cpu: cpus()[0]?.model, loadAtStart: loadavg(), benches: {} };
let md = `# bench results, ${summary.date}\n\n${summary.cpus} CPUs (${summary.cpu}), load at start ${loadavg().map((x) => x.toFixed(2)).join(' ')}.\n`;
let failed = 0;
for (const name of names.length ? names : all) {
  process.stdout.write(`\n=== bench/${name}.js ===\n`);
  const jsonFile = join(jsonDir ?? results, `${name}.json`);
  const extra = WRITES_JSON.has(name) || jsonDir ? ['--json', jsonFile] : [];
  // Printed as it runs and kept for latest.md.
  const out = await new Promise((resolve) => {
    const child = spawn(process.execPath, ['--expose-gc', join(here, `${name}.js`), ...pass, ...extra], { stdio: ['inherit', 'pipe', 'inherit'] });
    let text = '';
    child.stdout.on('data', (d) => { process.stdout.write(d); text += d; });
    child.on('close', (code, signal) => resolve({ text, code, signal }));
  });
  if (out.code !== 0) { failed++; process.stderr.write(`bench/${name}.js failed (exit ${out.code ?? out.signal})\n`); }
  let json = null;
  if (extra.length && existsSync(jsonFile)) { try { json = JSON.parse(readFileSync(jsonFile, 'utf8')); } catch { json = null; } }
  summary.benches[name] = { exit: out.code, json };
  md += `\n## bench/${name}.js${out.code !== 0 ? ` (FAILED, exit ${out.code ?? out.signal})` : ''}\n\n\`\`\`\n${out.text.trimEnd()}\n\`\`\`\n`;
}
summary.loadAtEnd = loadavg();
writeFileSync(join(results, 'latest.json'), JSON.stringify(summary, null, 2) + '\n');
writeFileSync(join(results, 'latest.md'), md);
process.stdout.write(`\nwrote ${join(results, 'latest.json')} and latest.md\n`);
process.exit(failed ? 1 : 0);
