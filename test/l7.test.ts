/**
 * The l7 stage (issue 9): HTTP rules inline (per segment) and in a proxy (per request).
 *   - the requests each mode finds (method, target, Host) are tshark's (its HTTP dissector, run at
 *     test time) on every shipped capture with HTTP that both can read, and on the crafted captures
 *     of test/fixtures/l7 (made by make.mjs there);
 *   - both modes give the same verdict on every request, and catch the denied request in each
 *     crafted case (method split, Host split, out of order, retransmission with other bytes);
 *   - hostile payloads cost bounded time and memory and end with a named drop reason;
 *   - profile errors name file and line; l7 without conntrack says why;
 *   - verdicts, written bytes and reports are the same for --batch 1, 7, 256 and --workers 2.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runParallel, workerPool } from '../src/pipeline/parallel.js';
import { parseProfile } from '../src/pipeline/profile.js';
import { buildStages } from '../src/pipeline/registry.js';
import { runCapture } from '../src/pipeline/run.js';
import type { StageReport } from '../src/pipeline/stage.js';
import '../src/stages/index.js';
import type { L7Stage } from '../src/stages/l7.js';
import type { RequestLogEntry } from '../src/l7/http.js';
import { CAPTURES, ROOT } from './helpers.js';
import { dist } from './dist.js';
import { createServer } from 'node:http';
import { connect } from 'node:net';

// Workers load dist/: the in-process runs of the batch/workers comparison use dist too.

const FIX = join(ROOT, 'test', 'fixtures', 'l7');
const dir = mkdtempSync(join(tmpdir(), 'dplab-l7-'));
const pool = workerPool(2);
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  await pool.destroy();
});

/** Shipped captures with HTTP where tshark and dplab read the same TCP streams. */
const SHIPPED = [
  'tcp_http/arkime_http-post-upload.pcap', 'tcp_http/arkime_http-simple-get.pcap', 'tcp_http/dpkt_http.pcap',
  'tcp_http/ppp_http-packets2.pcap', 'tcp_http/ppp_one_http_stream_fin.pcap', 'tcp_http/ppp_one_http_stream_fin2.pcap',
  'tcp_http/ppp_one_http_stream_rst.pcap', 'tcp_http/ppp_one_tcp_stream.pcap', 'tcp_http/ppp_tcp-reassembly.pcap',
  'tcp_http/ppp_three_http_streams.pcap', 'tcp_http/suricata_http-range-multiflows.pcap', 'tcp_http/zeek_http_bro.org.pcap',
  'tcp_http/zeek_http_get.pcap', 'tcp_http/ppp_650HttpResponses.pcap', 'tcp_http/tcpdump_ipv4_tcp_http_xml.pcap',
  'ipv6/arkime_v6-http.pcap', 'ipv6/ppp_four_ipv6_http_streams.pcap', 'ipv6/ppp_one_ipv6_http_stream.pcap',
  'linktype/gopacket_test_loopback.pcap',
].map((f) => join(CAPTURES, f));
const CRAFTED = ['allowed', 'split-method', 'split-host', 'out-of-order', 'retrans-diff', 'bodies', 'many-flows'].map((f) => join(FIX, `${f}.pcap`));

const RULES = 'rule: deny prefix /admin\nrule: deny host evil.example,*.doubleclick.net\nrule: deny method OPTIONS port 8080\nrule: deny prefix /js/jquery\n';

function run(file: string, mode: string, extra = '', rules = RULES) {
  const stages = buildStages(parseProfile(`pipeline: conntrack -> l7\n[l7]\nmode: ${mode}\nports: 80,8000,8080\n${rules}${extra}`, join(dir, 'l7.profile')));
  const l7 = stages[1] as L7Stage;
  const log: RequestLogEntry[] = [];
  l7.engine.log = (r) => log.push(r);
  const t0 = performance.now();
  const r = runCapture({ file, profile: 'l7', stages, timing: false });
  return { log, report: r.report, ms: performance.now() - t0 };
}

function tsharkRequests(file: string): string[] {
  const r = spawnSync('tshark', ['-r', file, '-o', 'tcp.reassemble_out_of_order:TRUE', '-Y', 'http.request', '-T', 'fields',
    '-e', 'http.request.method', '-e', 'http.request.uri', '-e', 'http.host'], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`tshark: ${r.stderr}`);
  return r.stdout.split('\n').filter((l) => l !== '').sort();
}

const rows = (log: RequestLogEntry[]) => log.map((r) => `${r.method}\t${r.uri}\t${r.host ?? ''}`).sort();

describe('requests found: tshark\'s, in both modes', () => {
  for (const file of [...SHIPPED, ...CRAFTED]) {
    it(file.slice(ROOT.length + 1), () => {
      const want = tsharkRequests(file);
      // No rules: a denied request closes its flow, and tshark would see the requests after it.
      for (const mode of ['inline', 'proxy']) expect(rows(run(file, mode, '', '').log), mode).toEqual(want);
    });
  }
  it('the shipped captures hold requests of several methods and hosts', () => {
    const all = SHIPPED.flatMap((f) => tsharkRequests(f));
    expect(all.length).toBeGreaterThan(100);
  });
});

describe('verdicts: the same request by request in both modes', () => {
  for (const file of [...SHIPPED, ...CRAFTED]) {
    it(file.slice(ROOT.length + 1), () => {
      const key = (log: RequestLogEntry[]) => log.map((r) => `${r.method} ${r.uri} ${r.host} -> ${r.rule}/${r.action}`).sort();
      const a = run(file, 'inline');
      const b = run(file, 'proxy');
      expect(key(a.log)).toEqual(key(b.log));
      expect(a.report.stageReports.l7!.denied).toBe(b.report.stageReports.l7!.denied);
    });
  }
  it('the rules deny some requests of the shipped captures and allow others', () => {
    let denied = 0;
    let allowed = 0;
    for (const f of SHIPPED) {
      const r = run(f, 'proxy').report.stageReports.l7!;
      denied += r.denied as number;
      allowed += r.allowed as number;
    }
    expect(denied).toBeGreaterThanOrEqual(5);
    expect(allowed).toBeGreaterThan(50);
  });
});

describe('crafted: the denied request is caught by both modes', () => {
  const cases: [string, number][] = [['split-method', 0], ['split-host', 1], ['out-of-order', 0], ['retrans-diff', 0]];
  for (const [name, rule] of cases) {
    it(name, () => {
      for (const mode of ['inline', 'proxy']) {
        const r = run(join(FIX, `${name}.pcap`), mode);
        expect(r.log.length, mode).toBe(1);
        expect(r.log[0]!.rule, mode).toBe(rule);
        expect(r.report.verdicts.dropsByReason['l7/rule'], mode).toBe(1);
      }
    });
  }
  it('out of order: inline drops the early segment and decides on the retransmission; the proxy queues it', () => {
    const a = run(join(FIX, 'out-of-order.pcap'), 'inline');
    expect(a.report.verdicts.dropsByReason['l7/out-of-order']).toBe(1);
    expect(a.log[0]!.packet).toBe(6);
    const b = run(join(FIX, 'out-of-order.pcap'), 'proxy');
    expect(b.log[0]!.packet).toBe(5);
    expect(b.report.verdicts.dropsByReason['l7/denied-flow']).toBe(1);
    expect(b.report.stageReports.l7!.responses403).toBe(1);
  });
  it('retransmission with other bytes: the first copy wins in both', () => {
    for (const mode of ['inline', 'proxy']) expect(run(join(FIX, 'retrans-diff.pcap'), mode).log[0]!.uri).toBe('/admin/a');
  });
  it('a header name that is not a token ends the flow as bad framing, as Node\'s llhttp rejects it; nothing is smuggled past as a body', async () => {
    // The oracle: node:http (llhttp) given the same request bytes refuses them.
    const smuggled = 'GET /admin HTTP/1.1\r\nHost: evil.example\r\n\r\n';
    const bytes = `POST /form HTTP/1.1\r\nHost: a\r\nContent\rLength: ${smuggled.length}\r\n\r\n${smuggled}`;
    const seen = await new Promise<string[]>((done) => {
      const got: string[] = [];
      const srv = createServer((req, res) => { got.push(`${req.method} ${req.url}`); req.resume(); req.on('end', () => res.end()); });
      srv.on('clientError', (e: NodeJS.ErrnoException, sock) => { got.push(String(e.code)); sock.destroy(); });
      srv.listen(0, '127.0.0.1', () => {
        const c = connect((srv.address() as { port: number }).port, '127.0.0.1', () => c.write(bytes));
        c.on('error', () => {});
        c.on('close', () => { srv.close(); done(got); });
      });
    });
    expect(seen).toEqual(['HPE_INVALID_HEADER_TOKEN']);
    for (const mode of ['inline', 'proxy']) {
      const r = run(join(FIX, 'smuggle.pcap'), mode);
      expect(r.report.verdicts.dropsByReason['l7/bad-framing'], mode).toBe(1);
      expect(r.log.map((x) => x.uri), mode).toEqual([]);
    }
  });
  it('bodies (Content-Length, chunked) are skipped, not read as requests', () => {
    for (const mode of ['inline', 'proxy']) {
      const r = run(join(FIX, 'bodies.pcap'), mode);
      expect(r.log.map((x) => x.uri)).toEqual(['/form', '/up', '/ok']);
      expect(r.report.stageReports.l7!.denied).toBe(0);
      expect(r.report.stageReports.l7!.bodyBytesSkipped).toBeGreaterThan(80);
    }
  });
});

describe('hostile payloads: bounded time and memory, a named verdict', () => {
  const cases: [string, string, string][] = [
    ['big-header', 'l7/header-too-large', 'headerBytes'],
    ['junk', 'l7/not-http', ''],
    ['pipelined', 'l7/too-many-requests', 'requests'],
  ];
  for (const [name, reason, limit] of cases) {
    it(name, () => {
      for (const mode of ['inline', 'proxy']) {
        const r = run(join(FIX, `${name}.pcap`), mode);
        expect(r.report.verdicts.dropsByReason[reason], mode).toBe(1);
        const rep = r.report.stageReports.l7!;
        if (limit !== '') expect((rep.limitsHit as StageReport)[limit], mode).toBe(1);
        // Memory: the request's buffer and one carried line, both within header-bytes (8 KiB).
        expect(rep.bufferedPeakBytes as number, mode).toBeLessThanOrEqual(2 * 8192 + 512);
        expect(r.ms, mode).toBeLessThan(2000);
        // Everything after the verdict is dropped as the flow's.
        const left = (r.report.verdicts.dropsByReason['l7/denied-flow'] ?? 0);
        expect(left, mode).toBeGreaterThan(0);
      }
    });
  }
  it('limits are configurable', () => {
    const r = run(join(FIX, 'pipelined.pcap'), 'proxy', 'max-requests: 5000\n');
    expect(r.log.length).toBe(5000);
    expect(r.report.verdicts.dropsByReason['l7/too-many-requests']).toBeUndefined();
    // ppp_tcp-reassembly's requests carry targets of several hundred bytes.
    const h = run(join(CAPTURES, 'tcp_http/ppp_tcp-reassembly.pcap'), 'inline', 'header-bytes: 256\n');
    expect(h.report.verdicts.dropsByReason['l7/header-too-large']).toBeGreaterThan(0);
  });
  it('proxy: out-of-order bytes beyond buffer-bytes reset the flow', () => {
    const r = run(join(CAPTURES, 'tcp_http/ppp_4KHttpRequests.pcap'), 'proxy', 'buffer-bytes: 2000\n');
    expect(r.report.verdicts.dropsByReason['l7/buffer-limit']).toBeGreaterThan(0);
    expect((r.report.stageReports.l7!.limitsHit as StageReport).bufferBytes).toBe(r.report.verdicts.dropsByReason['l7/buffer-limit']);
  });
});

describe('profile errors', () => {
  const build = (text: string) => () => buildStages(parseProfile(text, join(dir, 'bad.profile')));
  it('a bad rule names the profile line; a bad rules-file line names the file and line', () => {
    expect(build('pipeline: conntrack -> l7\n[l7]\nrule: deny verb GET\n')).toThrow(/bad\.profile:3: .*unknown clause "verb"/);
    const rules = join(dir, 'bad.rules');
    writeFileSync(rules, '# comment\ndeny prefix /a\n\nallow path nope\n');
    expect(build(`pipeline: conntrack -> l7\n[l7]\nrules: ${rules}\n`)).toThrow(/bad\.rules:4: .*starts with "\/"/);
    expect(build('pipeline: conntrack -> l7\n[l7]\nmode: sideways\n')).toThrow(/bad\.profile:3: .*inline, proxy/);
  });
  it('l7 without conntrack says why', () => {
    expect(build('pipeline: l7\n[l7]\nmode: proxy\n')).toThrow(/l7 needs a conntrack stage before it/);
  });
  it('the shipped profiles build', () => {
    for (const p of ['ebpf-l7', 'iptables-proxy']) {
      const text = readFileSync(join(ROOT, 'profiles', `${p}.profile`), 'utf8');
      expect(() => buildStages(parseProfile(text, join(ROOT, 'profiles', `${p}.profile`)))).not.toThrow();
    }
  });
});

describe('--batch 1, 7, 256 and --workers 2 give the same verdicts, bytes and reports', () => {
  const FWD = join(dir, 'fwd.pcap');
  const DROP = join(dir, 'drop.pcap');
  const files = [
    join(CAPTURES, 'tcp_http/ppp_4KHttpRequests.pcap'), join(CAPTURES, 'tcp_http/zeek_http_bro.org.pcap'),
    join(CAPTURES, 'tcp_http/ppp_http-packets2.pcap'), join(FIX, 'out-of-order.pcap'), join(FIX, 'pipelined.pcap'),
    // 1,200 flows: the flow table grows past its first 512 entries mid-run, moving the l7 stage's
    // per-flow parser state while 300 requests are half read.
    join(FIX, 'many-flows.pcap'),
  ];
  const strip = (r: Record<string, StageReport>) => {
    // The buffer peak is per worker (merged as the largest), not a count.
    const o = structuredClone(r);
    delete o.l7!.bufferedPeakBytes;
    return o;
  };
  for (const profile of ['ebpf-l7', 'iptables-proxy']) {
    for (const file of files) {
      it(`${profile} ${file.slice(ROOT.length + 1)}`, async () => {
        const path = join(ROOT, 'profiles', `${profile}.profile`);
        const once = (batchSize: number) => {
          const r = dist.run.runCapture({ file, profile: path, stages: dist.registry.buildStages(dist.profile.loadProfile(path)), batchSize, write: FWD, writeDropped: DROP, timing: false }).report;
          return { fwd: readFileSync(FWD), drop: readFileSync(DROP), reports: r.stageReports, drops: r.verdicts.dropsByReason };
        };
        const base = once(256);
        expect((base.reports.l7!.requestsInspected as number) > 0).toBe(true);
        for (const batchSize of [1, 7]) {
          const o = once(batchSize);
          expect(o.fwd.equals(base.fwd), `--batch ${batchSize}`).toBe(true);
          expect(o.drop.equals(base.drop), `--batch ${batchSize}`).toBe(true);
          expect(o.reports, `--batch ${batchSize}`).toEqual(base.reports);
          expect(o.drops).toEqual(base.drops);
        }
        const p = await runParallel({ file, profile: path, workers: 2, batchSize: 7, pool, write: FWD, writeDropped: DROP, timing: false });
        expect(readFileSync(FWD).equals(base.fwd), '--workers 2: forwarded').toBe(true);
        expect(readFileSync(DROP).equals(base.drop), '--workers 2: dropped').toBe(true);
        expect(strip(p.report.stageReports)).toEqual(strip(base.reports));
        expect(p.report.verdicts.dropsByReason).toEqual(base.drops);
      });
    }
  }
});
