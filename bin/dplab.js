#!/usr/bin/env node
// dplab's entry point: the compiled CLI lives in dist/ (built by `npm install` / `npm run build`).
import { existsSync } from 'node:fs';

const main = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write('dplab: not built yet. Run "npm install" (or "npm run build") in the dplab folder first.\n');
  process.exit(1);
}
// "dplab replay big.pcap | head": the reader went away; stop quietly, as other Unix tools do.
process.stdout.on('error', (e) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw e;
});
const { main: run } = await import(main.href);
process.exitCode = await run(process.argv.slice(2));
