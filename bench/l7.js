// The l7 stage (issue 9): HTTP rules inline (every segment, eBPF-style) against a proxy (each
// request parsed once, Envoy-style), on generated HTTP traffic at 5, 50 and 5,000 packets per flow
// (the article's "5 or 5,000 packets"), with conntrack alone as the floor; and the HTTP parsers
// that could do the proxy's parsing, on the same request streams.
//
// Input: HTTP/1.1 flows written by this file (bench/out/l7-P.pcap; raw IP, IPv4): a handshake,
// then Q keep-alive GET requests (one 150-200 byte segment each, a Host header and four others),
// each answered by 1,400-byte response segments; Q = 1 at 5 packets per flow, 5 at 50, 50 at 5,000.
// C flows interleave (C = 1,000 or fewer). Contenders, in turn each round, inline on the main thread:
//   conntrack   pipeline: conntrack
//   inline      pipeline: conntrack -> l7 (mode: inline)     rules: 6, none denying (a denied request
//                                                             would close its flow and hide the rest), the last allowing
//   proxy       pipeline: conntrack -> l7 (mode: proxy)      the same rules
// Printed: dataplane ns/packet (conntrack + l7 stage times over all packets), l7's own ns/packet and
// ns/request, and the ratios; requests decided (checked equal in both modes, every round).
//
// Parsers on the same request streams (each flow's request bytes, cut as the capture cuts them):
//   dplab       src/l7/http.ts through the l7 stage (proxy mode, its row above: ns/request)
//   http-parser-js  (npm; measured when it can be imported: npm i --no-save http-parser-js, or
//               NODE_PATH): one HTTPParser per flow, execute() per segment
//   node:http   Node's own llhttp through its supported API: an http.Server fed by a Duplex per flow
//
//   node bench/l7.js [--rounds 3] [--packets 300000] [--json FILE]
import { spawnSync } from 'node:child_process';
import { writeFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { benchArgs, loadDist, median, OUT } from './lib/common.js';

const { runCapture } = await loadDist('pipeline/run.js');
const { loadProfile } = await loadDist('pipeline/profile.js');
const { buildStages } = await loadDist('pipeline/registry.js');
const { writePcapHeader, FILE_HEADER } = await loadDist('capture/pcap.js');
await loadDist('stages/index.js');

const args = benchArgs('l7.js', 300000);
const ROUNDS = args.rounds;
const PACKETS = args.packets;
/** A failed check: one line on stderr, exit status 1 (no stack trace). */
function fail(msg) {
  process.stderr.write(`bench/l7.js: ${msg}\n`);
  process.exit(1);
}

// ---- the traffic -------------------------------------------------------------------------------

function csum(buf, o, n, init = 0) {
  let s = init;
  for (let k = 0; k + 1 < n; k += 2) s += (buf[o + k] << 8) | buf[o + k + 1];
  if (n & 1) s += buf[o + n - 1] << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

function tcp(src, dst, sport, dport, seq, ack, flags, payload) {
  const len = 40 + payload.length;
  const p = Buffer.alloc(len);
  p.set([0x45, 0, len >> 8, len & 255, 0, 1, 0x40, 0, 64, 6, 0, 0], 0);
  p.writeUInt32BE(src >>> 0, 12);
  p.writeUInt32BE(dst >>> 0, 16);
  const ic = ~csum(p, 0, 20) & 0xffff;
  p.writeUInt16BE(ic, 10);
  p.writeUInt16BE(sport, 20); p.writeUInt16BE(dport, 22);
  p.writeUInt32BE(seq >>> 0, 24); p.writeUInt32BE(ack >>> 0, 28);
  p[32] = 0x50; p[33] = flags; p.writeUInt16BE(65535, 34);
  p.set(payload, 40);
  return p;
}

const PATHS = ['/', '/index.html', '/api/v1/items?page=2', '/static/app.js', '/images/logo.png', '/admin/login', '/search?q=ebpf'];
const HOSTS = ['shop.example', 'api.example', 'cdn.example', 'www.example'];
function request(f, k) {
  return Buffer.from(`GET ${PATHS[(f + k) % PATHS.length]} HTTP/1.1\r\nHost: ${HOSTS[f % HOSTS.length]}\r\n`
    + 'User-Agent: bench/1.0\r\nAccept: */*\r\nAccept-Encoding: gzip\r\nConnection: keep-alive\r\n\r\n');
}
const RESPONSE = Buffer.alloc(1400, 0x61);

/** Packets of flow f with P packets: [isClient, payload] in order. */
function* flowPackets(f, P) {
  const Q = P <= 5 ? 1 : P <= 50 ? 5 : 50;
  const client = (10 << 24) | (1 << 16) | (f & 0xffff);
  const server = (172 << 24) | (16 << 16) | (1 + (f % 16));
  const sport = 1024 + (f % 60000);
  let cs = 1000, ss = 90000;
  yield tcp(client, server, sport, 80, cs, 0, 0x02, Buffer.alloc(0));
  yield tcp(server, client, 80, sport, ss, cs + 1, 0x12, Buffer.alloc(0));
  cs++; ss++;
  yield tcp(client, server, sport, 80, cs, ss, 0x10, Buffer.alloc(0));
  const M = P - 3;
  const per = Math.floor((M - Q) / Q);
  let left = M;
  for (let k = 0; k < Q; k++) {
    const req = request(f, k);
    yield tcp(client, server, sport, 80, cs, ss, 0x18, req);
    cs += req.length; left--;
    const n = k === Q - 1 ? left : per;
    for (let j = 0; j < n; j++) { yield tcp(server, client, 80, sport, ss, cs, 0x10, RESPONSE); ss += RESPONSE.length; left--; }
  }
}

/** The capture for P packets per flow (generated once), and each flow's request segments. */
function capture(P) {
  const file = join(OUT, `l7-${P}-${PACKETS}.pcap`);
  const flows = Math.max(1, Math.round(PACKETS / P));
  const C = Math.min(1000, flows);
  const streams = [];
  for (let f = 0; f < flows; f++) {
    const Q = P <= 5 ? 1 : P <= 50 ? 5 : 50;
    streams.push(Array.from({ length: Q }, (_, k) => request(f, k)));
  }
  if (existsSync(file)) return { file, flows, streams };
  const parts = [];
  const head = Buffer.alloc(FILE_HEADER);
  writePcapHeader(new DataView(head.buffer, head.byteOffset, FILE_HEADER), 0, false, 65535, 101); // LINKTYPE_RAW
  parts.push(head);
  const active = [];
  let nextFlow = 0;
  let t = 0;
  while (active.length < C && nextFlow < flows) active.push(flowPackets(nextFlow++, P));
  while (active.length > 0) {
    for (let a = 0; a < active.length; a++) {
      const r = active[a].next();
      if (r.done) {
        if (nextFlow < flows) active[a] = flowPackets(nextFlow++, P);
        else { active.splice(a, 1); a--; }
        continue;
      }
      const rec = Buffer.alloc(16);
      rec.writeUInt32LE(1700000000 + Math.floor(t / 1e6), 0); rec.writeUInt32LE(t % 1e6, 4);
      rec.writeUInt32LE(r.value.length, 8); rec.writeUInt32LE(r.value.length, 12);
      parts.push(rec, r.value);
      t += 3;
    }
  }
  writeFileSync(file, Buffer.concat(parts));
  return { file, flows, streams };
}

// ---- the dataplane runs ------------------------------------------------------------------------

const RULES = 'rule: deny prefix /admin host evil.example\nrule: deny method DELETE,PUT\nrule: deny host *.doubleclick.net\n'
  + 'rule: deny prefix /internal\nrule: deny method OPTIONS port 8080\nrule: allow host shop.example,cdn.example,www.example,api.example\n';
const profile = (name, text) => {
  const f = join(OUT, `l7-${name}.profile`);
  writeFileSync(f, text);
  return f;
};
const PROFILES = {
  conntrack: profile('conntrack', 'pipeline: conntrack\n[conntrack]\ncapacity: 1Mi\n'),
  inline: profile('inline', `pipeline: conntrack -> l7\n[conntrack]\ncapacity: 1Mi\n[l7]\nmode: inline\n${RULES}`),
  proxy: profile('proxy', `pipeline: conntrack -> l7\n[conntrack]\ncapacity: 1Mi\n[l7]\nmode: proxy\nmax-requests: 100000\n${RULES}`),
};

function runDplab(name, file) {
  const p = PROFILES[name];
  const t0 = process.hrtime.bigint();
  const r = runCapture({ file, profile: p, stages: buildStages(loadProfile(p)) });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const rep = r.report;
  const row = (s) => rep.stages.find((x) => x.name === s);
  const ns = (s) => (row(s) ? row(s).ns : 0);
  const l7 = rep.stageReports.l7;
  return {
    secs, packets: rep.verdicts.packets,
    conntrack: ns('conntrack') / rep.verdicts.packets,
    l7: ns('l7') / rep.verdicts.packets,
    l7Total: ns('l7'),
    requests: l7 ? l7.requestsInspected : 0,
    check: l7 ? JSON.stringify([l7.requestsInspected, l7.allowed, l7.denied, rep.verdicts.dropped]) : String(rep.verdicts.dropped),
  };
}

// ---- the parsers on the same streams ------------------------------------------------------------

let HTTPParser = null;
try {
  const req = createRequire(join(process.cwd(), 'x.js'));
  ({ HTTPParser } = req('http-parser-js'));
} catch { /* not installed: its column is skipped */ }

function runHttpParserJs(streams) {
  let requests = 0;
  const t0 = process.hrtime.bigint();
  for (const segs of streams) {
    const p = new HTTPParser(HTTPParser.REQUEST);
    p[HTTPParser.kOnHeadersComplete] = () => { requests++; };
    for (const s of segs) p.execute(s);
  }
  return { ns: Number(process.hrtime.bigint() - t0), requests };
}

async function runNodeHttp(streams) {
  let requests = 0;
  const server = createServer({ keepAlive: true }, (req, res) => { requests++; req.resume(); res.end(); });
  const t0 = process.hrtime.bigint();
  await new Promise((resolve) => {
    let k = 0;
    const next = () => {
      if (k === streams.length) { resolve(); return; }
      const segs = streams[k++];
      const sock = new Duplex({ read() {}, write(_c, _e, cb) { cb(); } });
      server.emit('connection', sock);
      for (const s of segs) sock.push(s);
      sock.push(null);
      setImmediate(next);
    };
    next();
  });
  const ns = Number(process.hrtime.bigint() - t0);
  server.close();
  return { ns, requests };
}

// ---- ndpiReader (the C peer for per-packet inspection) ------------------------------------------

const ndpi = spawnSync('ndpiReader', ['-h'], { encoding: 'utf8' }).error === undefined;
function runNdpi(file) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync('ndpiReader', ['-i', file, '-q'], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) fail(`ndpiReader failed: ${String(r.stderr).trim().split('\n').pop()}`);
  return { secs };
}

// ---- rounds -------------------------------------------------------------------------------------

const results = [];
process.stdout.write(`bench/l7.js: ${PACKETS.toLocaleString('en-US')} packets per capture, ${ROUNDS} rounds; ${cpus().length} CPUs, load ${loadavg().map((x) => x.toFixed(2)).join(' ')}\n`);
if (!HTTPParser) process.stdout.write('http-parser-js not importable from the working directory: its column is skipped\n');
if (!ndpi) process.stdout.write('ndpiReader not found (Debian package libndpi-bin): its column is skipped\n');
for (const ppf of [5, 50, 5000]) {
  const { file, streams } = capture(ppf);
  const names = ['conntrack', 'inline', 'proxy'];
  const runs = Object.fromEntries([...names, 'ndpi'].map((c) => [c, []]));
  runDplab('inline', file); runDplab('proxy', file); // warm the JIT
  for (let r = 0; r < ROUNDS; r++) {
    for (let k = 0; k < names.length; k++) {
      const c = names[(k + r) % names.length];
      runs[c].push(runDplab(c, file));
    }
    if (ndpi) runs.ndpi.push(runNdpi(file));
  }
  for (const c of ['inline', 'proxy']) if (new Set(runs[c].map((x) => x.check)).size !== 1) fail(`${c}: counts changed between rounds`);
  if (runs.inline[0].check !== runs.proxy[0].check) fail(`inline and proxy disagree: ${runs.inline[0].check} vs ${runs.proxy[0].check}`);
  const med = (c, k) => median(runs[c].map((x) => x[k]));
  const requests = runs.proxy[0].requests;
  const packets = runs.proxy[0].packets;
  const parsers = {};
  if (HTTPParser) {
    runHttpParserJs(streams);
    const xs = Array.from({ length: ROUNDS }, () => runHttpParserJs(streams));
    if (xs[0].requests !== requests) fail(`http-parser-js found ${xs[0].requests} requests, dplab ${requests}`);
    parsers.httpParserJs = median(xs.map((x) => x.ns)) / requests;
  }
  {
    const xs = [];
    for (let r = 0; r < ROUNDS; r++) xs.push(await runNodeHttp(streams));
    if (xs[0].requests !== requests) fail(`node:http found ${xs[0].requests} requests, dplab ${requests}`);
    parsers.nodeHttp = median(xs.map((x) => x.ns)) / requests;
  }
  results.push({
    packetsPerFlow: ppf, packets, requests,
    conntrackNs: med('conntrack', 'conntrack'),
    inline: { conntrackNs: med('inline', 'conntrack'), l7Ns: med('inline', 'l7'), perRequestNs: med('inline', 'l7Total') / requests, mpps: packets / med('inline', 'secs') / 1e6 },
    proxy: { conntrackNs: med('proxy', 'conntrack'), l7Ns: med('proxy', 'l7'), perRequestNs: med('proxy', 'l7Total') / requests, mpps: packets / med('proxy', 'secs') / 1e6 },
    parsers,
    ...(ndpi ? { ndpiMpps: packets / med('ndpi', 'secs') / 1e6 } : {}),
  });
}

const f1 = (x) => x.toFixed(1);
const f2 = (x) => x.toFixed(2);
process.stdout.write('\npackets/flow  requests | ns/packet: conntrack  inline (l7)  proxy (l7)  inline/ct  proxy/ct | l7 ns/request: inline  proxy | Mpps: inline  proxy  ndpiReader | parser ns/request: http-parser-js  node:http\n');
for (const r of results) {
  const inl = r.inline.conntrackNs + r.inline.l7Ns;
  const prx = r.proxy.conntrackNs + r.proxy.l7Ns;
  process.stdout.write(`${String(r.packetsPerFlow).padStart(12)}  ${String(r.requests).padStart(8)} | ${f1(r.conntrackNs).padStart(19)}  ${`${f1(inl)} (${f1(r.inline.l7Ns)})`.padStart(11)}  ${`${f1(prx)} (${f1(r.proxy.l7Ns)})`.padStart(10)}  ${f2(inl / r.conntrackNs).padStart(9)}  ${f2(prx / r.conntrackNs).padStart(8)} | `
    + `${f1(r.inline.perRequestNs).padStart(21)}  ${f1(r.proxy.perRequestNs).padStart(5)} | ${f2(r.inline.mpps).padStart(12)}  ${f2(r.proxy.mpps).padStart(5)}  ${r.ndpiMpps ? f2(r.ndpiMpps).padStart(10) : '-'.padStart(10)} | `
    + `${(r.parsers.httpParserJs ? f1(r.parsers.httpParserJs) : '-').padStart(32)}  ${(r.parsers.nodeHttp ? f1(r.parsers.nodeHttp) : '-').padStart(9)}\n`);
}
process.stdout.write('\nMedians of the rounds. ns/packet are the stages\' own times over every packet of the capture; l7 ns/request is\n'
  + 'l7\'s whole time divided by the requests decided. The parsers column times each parser alone on the flows\' request\n'
  + 'segments (no capture, no conntrack): compare it with l7 ns/request, which also pays the per-packet walk.\n');
if (args.json) writeFileSync(args.json, JSON.stringify({ packets: PACKETS, rounds: ROUNDS, results }, null, 2) + '\n');
