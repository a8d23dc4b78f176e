#!/bin/sh
":" //; unset NODE_EXTRA_CA_CERTS; export GLIBC_TUNABLES="glibc.malloc.hugetlb=1:glibc.malloc.top_pad=33554432${GLIBC_TUNABLES:+:$GLIBC_TUNABLES}"; z=$0; [ -L "$z" ] && z=$(readlink -f "$z"); s=${DPLAB_DIST:-${z%/*}/../dist}/dplab.blob; [ -z "$DPLAB_NO_SNAPSHOT" ] && [ -f "$s" ] && [ "$s" -nt "${s%/*}/cli/main.js" ] && [ "$s" -nt "$(command -v node)" ] && exec node --snapshot-blob "$s" -- "$@"; exec node "$0" "$@"
// dplab's entry point, read twice. Run as a program (`dplab`, `npx dplab`, `./bin/dplab.js`), the
// shell reads the line above, then starts node: from dplab's start-up snapshot when the build made
// one (dist/dplab.blob, see scripts/snapshot.js) and it is newer than dist/'s code (a tsc run
// alone leaves it stale) and than the node it finds (an older blob may be another node version's),
// else on this file, which node reads taking that line for a string and a comment. The snapshot
// holds dplab's modules loaded and set up, so a start skips resolving, reading and compiling ~50
// of them: 97 -> 50 ms for a one-packet replay, 297 -> 213 ms for the README's compare
// (DESIGN.md "Ninth pass"). "--" keeps dplab's options from node's;
// DPLAB_NO_SNAPSHOT=1 starts from the files; a symlinked dplab (npm link, npx) is followed to
// find dist/. The line also sets three things for the node it starts:
// - glibc.malloc.hugetlb=1: big buffers get transparent huge pages (madvise, which the kernel's
//   default "madvise" mode honours). A flow table's memory is written page by page as flows
//   arrive, and a first write to a 4 KB page is a page fault, ~12 us each on a VM (the hypervisor
//   backs the page too): the `ebpf` replay of a 3M-packet capture took 18.3k -> 11.8k faults and
//   1.30 -> 1.25 s (DESIGN.md "Speed").
// - glibc.malloc.top_pad=32 MB: malloc grows its heaps 32 MB at a time instead of 128 KB. Most of
//   the faults left were V8's (the optimising compiler's zones, small typed arrays' backing
//   stores), in heap memory malloc kept handing back to the kernel and asking for again: 11.4k ->
//   4.2k faults, 1.07x on that replay, 1.00-1.21x on `compare` over the demo capture, 12 MB more
//   resident (DESIGN.md "Seventh pass").
// - no NODE_EXTRA_CA_CERTS: Node 20 parses that certificate bundle as it starts, before any of
//   dplab runs (40 ms of a 66 ms `node -e 0` here, with Debian's bundle), and dplab makes no TLS
//   connection, nor do its workers.
// A user's own GLIBC_TUNABLES come after ours and win (glibc.malloc.hugetlb=0 turns huge pages
// off); on other C libraries the variable means nothing. `node bin/dplab.js` skips the line: the
// same run from dist/'s modules, with glibc's defaults and the caller's environment as it is.
//
// The compiled CLI lives in dist/ (built by `npm install` / `npm run build`); DPLAB_DIST names
// another build, for benchmarks that run two builds' command lines side by side.
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const main = process.env.DPLAB_DIST ? new URL('cli/main.js', pathToFileURL(process.env.DPLAB_DIST + '/')) : new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write(process.env.DPLAB_DIST
    ? `dplab: DPLAB_DIST=${process.env.DPLAB_DIST} holds no build (no cli/main.js): unset it, or build there.\n`
    : 'dplab: not built yet. Run "npm install" (or "npm run build") in the dplab folder first.\n');
  process.exit(1);
}
const cli = await import(main.href);
// A build from before runCli existed (bench/ab.js runs older builds' command lines) has main alone.
if (cli.runCli) await cli.runCli(process.argv.slice(2));
else process.exitCode = await cli.main(process.argv.slice(2));
