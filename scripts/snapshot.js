// Build dplab's start-up snapshot (run by `npm run build` and `npm install`, after tsc):
//   dist/dplab.cjs   dist/cli/snapshot.js and every module it reaches, bundled by esbuild into one
//                    CommonJS script (node builds a snapshot from one script, with Node's modules only)
//   dist/dplab.blob  node's heap after running that script once: dplab's modules loaded and set up
// bin/dplab.js's shell line starts node from the blob when it is there and newer than both dist/'s
// code and node itself.
// A start then skips loading ~50 ES modules (resolve, read, compile, link): a one-packet replay
// went 97 -> 50 ms on this project's VM (DESIGN.md "Ninth pass").
//
// When it cannot be built (no esbuild, a node without --build-snapshot, DPLAB_NO_SNAPSHOT=1) this
// says why on one line and leaves no blob: dplab then starts from dist/'s modules, as before, and
// the build does not fail. test/launcher.test.ts fails instead, so CI notices.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const DIST = join(ROOT, 'dist');
const BUNDLE = join(DIST, 'dplab.cjs');
const BLOB = join(DIST, 'dplab.blob');

// Node says this of modules its snapshot builder has not certified; dplab uses them only at run time.
const NOT_VERIFIED = /not yet fully verified whether built-in module|may still work in some cases|in other cases certain run-time|To request support for the module|--trace-warnings/;

function skip(why) {
  rmSync(BLOB, { force: true });
  process.stderr.write(`dplab build: no start-up snapshot (${why}); dplab starts from dist/'s modules, ~40 ms slower\n`);
  process.exit(0);
}

rmSync(BLOB, { force: true });
rmSync(BUNDLE, { force: true });
if (process.env.DPLAB_NO_SNAPSHOT) skip('DPLAB_NO_SNAPSHOT is set');
if (!existsSync(join(DIST, 'cli', 'snapshot.js'))) skip('dist/cli/snapshot.js is missing: run tsc first');
let esbuild;
try {
  esbuild = await import('esbuild');
} catch {
  skip('esbuild, a devDependency, is not installed');
}
let bundle;
try {
  const built = await esbuild.build({
    write: false,
    entryPoints: [join(DIST, 'cli', 'snapshot.js')],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    outfile: BUNDLE,
    logLevel: 'error',
    // Each module's import.meta.url becomes dist/cli/main.js's: every module that uses it sits one
    // folder below dist/ and only goes up from there (to dist/, profiles/, bpf/, node_modules/).
    define: { 'import.meta.url': 'globalThis.__dplabUrl' },
    banner: { js: 'globalThis.__dplabUrl = require("url").pathToFileURL(require("path").join(require("fs").realpathSync(__dirname), "cli", "main.js")).href;' },
    alias: { 'piscina': join(ROOT, 'scripts', 'snapshot-piscina.cjs'), 'node:worker_threads': join(ROOT, 'scripts', 'snapshot-worker-threads.cjs') },
    // import() stays import() (cli/snapshot.ts gives those modules to pipeline/lazy.ts, so it is
    // never called): bundled, each module it reaches would be wrapped in a lazy initialiser, and
    // V8 optimises code that reads its constants through those ~18% worse (3,082 instructions a
    // packet against 2,599 for ebpf; flat, as here, 2,635).
    plugins: [{
      name: 'import-stays',
      setup(b) { b.onResolve({ filter: /.*/ }, (a) => (a.kind === 'dynamic-import' ? { path: a.path, external: true } : undefined)); },
    }],
  });
  bundle = built.outputFiles[0].text;
} catch (e) {
  skip(`esbuild failed: ${e.message.split('\n')[0]}`);
}

/** Run node once on the bundle and save its heap as the blob: node's complaints, or null. */
function buildSnapshot(text) {
  writeFileSync(BUNDLE, text);
  const r = spawnSync(process.execPath, ['--snapshot-blob', BLOB, '--build-snapshot', BUNDLE], {
    encoding: 'utf8', cwd: ROOT, env: { ...process.env, NODE_OPTIONS: '' },
  });
  const said = (r.stderr ?? '').split('\n').filter((l) => l.trim() !== '' && !NOT_VERIFIED.test(l));
  if (r.status !== 0 || !existsSync(BLOB)) return said.slice(0, 3).join(' ') || `exit ${r.status}`;
  if (said.length) process.stderr.write(said.map((l) => `dplab build: ${l}\n`).join(''));
  return null;
}

// As esbuild wrote it if the constants cannot be made const (a use before its declaration shows
// here, as node runs every module's top level while it builds).
if (buildSnapshot(constify(bundle)) !== null) {
  rmSync(BLOB, { force: true });
  const why = buildSnapshot(bundle);
  if (why !== null) skip(`node --build-snapshot failed: ${why}`);
}

/**
 * The bundle with its constants declared `const` again. esbuild declares every top-level binding
 * of a bundle with `var`, the modules' `const`s included, and V8 folds a `const` into the code that
 * reads it (a record's size, a stage's codes: e * REC a shift, not a multiply with checks) but
 * reloads and rechecks a `var` at each use: ebpf ran 2,642 instructions a packet from the bundle as
 * written, 2,566 with this, 2,599 from dist/'s ES modules (bench/count.js's capture, callgrind).
 * A top-level `var` (a name, or a destructuring of names) becomes `const` only when nothing can
 * assign it: it is declared once, it is not one of dplab's module-level `let`s (state; dist/ holds
 * seven), and no assignment, update or for-in/of target of its name appears anywhere in the bundle
 * (a name used so in a nested scope keeps its `var` too: cautious, not exact). TypeScript already
 * refuses an assignment to a `const` or a class, the rest of what esbuild declares.
 */
function constify(text) {
  const lets = new Set();
  for (const file of readdirSync(DIST, { recursive: true })) {
    if (!String(file).endsWith('.js')) continue;
    for (const m of readFileSync(join(DIST, String(file)), 'utf8').matchAll(/^(?:export )?let ([A-Za-z_$][\w$]*)/gm)) lets.add(m[1]);
  }
  const lines = text.split('\n');
  const declared = new Map();
  const decls = lines.map((line, i) => {
    const one = /^var ([A-Za-z_$][\w$]*) = /.exec(line);
    const many = /^var \{ ([^={}[\].]*) \} = [A-Za-z_$][\w$]*;$/.exec(line);
    const names = one ? [one[1]] : many ? many[1].split(',').map((e) => e.split(':').pop().trim()) : [];
    for (const n of names) declared.set(n, (declared.get(n) ?? 0) + 1);
    // A name's declaration is the one assignment its line holds; a destructuring's lines hold none.
    return names.length ? { i, names, own: one ? 1 : 0 } : null;
  }).filter((d) => d !== null);
  const esc = (n) => n.replace(/\$/g, '\\$');
  // A name assigned by destructuring ([a, b] = ...) is not looked for: in dplab's code only a
  // `let` could be, and those keep their `var` whatever is found.
  const assigned = (n) => {
    const x = esc(n);
    const target = new RegExp(`(?<![.\\w$])${x}\\s*(?:[-+*/%&|^]|\\*\\*|<<|>>>?|&&|\\|\\||\\?\\?)?=(?![=>])`
      + `|(?:\\+\\+|--)\\s*${x}(?![\\w$])|(?<![.\\w$])${x}\\s*(?:\\+\\+|--)|for\\s*\\(\\s*${x}\\s+(?:of|in)\\b`, 'g');
    return [...text.matchAll(target)].length;
  };
  for (const { i, names, own } of decls) {
    const ok = names.every((n) => declared.get(n) === 1 && !lets.has(n.replace(/\d+$/, '')) && assigned(n) === own);
    if (ok) lines[i] = lines[i].replace(/^var /, 'const ');
  }
  return lines.join('\n');
}
