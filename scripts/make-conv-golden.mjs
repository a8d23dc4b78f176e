#!/usr/bin/env node
// Regenerates test/golden/conv/<capture>.json: tshark's TCP and UDP conversation statistics
// (`tshark -n -q -z conv,tcp -z conv,udp`) for every clean capture (outside fuzz/ and malformed/).
// These are the independent expected values for conntrack's flows and per-direction counters.
//
// Rules, so the numbers mean the same on both sides:
//  - IP reassembly is off (-o ip.defragment:FALSE -o ipv6.defragment:FALSE): a UDP conversation
//    then counts each wire packet that carries the UDP header (the first fragment), not a
//    reassembled datagram.
//  - tshark prints bytes exactly below 10 kB and rounded above ("248 kB"); such values are kept
//    as {"kB": 248} and compared within tshark's display precision.
//  - A conversation is keyed by its endpoints; "->" is A to B, "<-" is B to A (A = left column).
//
// Usage: node scripts/make-conv-golden.mjs   (needs tshark; run from the repository root)
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { decodeAs } from './lib/decode-as.mjs';

const root = join(dirname(new URL(import.meta.url).pathname), '..');
const index = readFileSync(join(root, 'captures/INDEX.tsv'), 'utf8').trim().split('\n').slice(1).map((l) => l.split('\t')[0]);
const clean = index.filter((f) => !f.startsWith('fuzz/') && !f.startsWith('malformed/'));

function parseBytes(s) {
  const m = /^([\d,]+) (bytes|kB|MB|GB)$/.exec(s.trim());
  if (!m) throw new Error(`unexpected byte count "${s}"`);
  const n = Number(m[1].replace(/,/g, ''));
  return m[2] === 'bytes' ? n : { [m[2]]: n };
}

function endpoint(s) {
  const k = s.lastIndexOf(':');
  return [s.slice(0, k), Number(s.slice(k + 1))];
}

let total = 0;
for (const file of clean) {
  const out = execFileSync('tshark', ['-n', '-r', join(root, 'captures', file), '-q',
    '-o', 'ip.defragment:FALSE', '-o', 'ipv6.defragment:FALSE', '-z', 'conv,tcp', '-z', 'conv,udp', ...decodeAs(file)],
  { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 1 << 28 });
  const convs = [];
  let proto = null;
  for (const line of out.split('\n')) {
    if (line.startsWith('TCP Conversations')) proto = 'tcp';
    else if (line.startsWith('UDP Conversations')) proto = 'udp';
    const m = /^(\S+)\s+<->\s+(\S+)\s+(\d+)\s+([\d,]+ (?:bytes|kB|MB|GB))\s+(\d+)\s+([\d,]+ (?:bytes|kB|MB|GB))\s+(\d+)/.exec(line);
    if (!m || !proto) continue;
    const [a, ap] = endpoint(m[1]);
    const [b, bp] = endpoint(m[2]);
    convs.push({ proto, a, aport: ap, b, bport: bp,
      framesBA: Number(m[3]), bytesBA: parseBytes(m[4]), framesAB: Number(m[5]), bytesAB: parseBytes(m[6]) });
  }
  const dest = join(root, 'test/golden/conv', `${file}.json`);
  mkdirSync(dirname(dest), { recursive: true });
  writeFileSync(dest, JSON.stringify({ file, tshark: execFileSync('tshark', ['-v'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n')[0], conversations: convs }, null, 1) + '\n');
  total += convs.length;
}
console.log(`${clean.length} captures, ${total} conversations`);
