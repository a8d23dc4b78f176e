// `dplab` from the build under test (dist/, or DPLAB_DIST), for benchmarks that run the command
// line as a peer runs its own: `node bench/lib/dplab-cli.js replay FILE ...`. bin/dplab.js always
// takes ../dist; this one follows DPLAB_DIST like the in-process benchmarks.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const dist = resolve(process.env.DPLAB_DIST ?? join(dirname(fileURLToPath(import.meta.url)), '../../dist'));
const { main } = await import(pathToFileURL(join(dist, 'cli/main.js')).href);
process.exitCode = await main(process.argv.slice(2));
