/**
 * dplab live on a real interface: a veth pair with one end in a network namespace this test
 * creates and deletes. dplab (the built CLI) and tcpdump both listen on the namespace's end while
 * real traffic crosses the veth (tcpreplay of shipped captures, or Python sockets talking to the
 * namespace); then dplab must have seen exactly the packets that were sent, byte for byte, and
 * its report must equal `dplab replay` on tcpdump's recording of the same packets: the same
 * verdicts, drops by stage and reason, flows, and per-stage figures. Both capture paths, and
 * `--workers 2` (a PACKET_FANOUT group) against one worker. Needs root: without it every test
 * fails saying why (CI runs as root).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, readAll, tsharkCount } from './helpers.js';
import { TestNet, netnsUnavailable, sh } from './netns.js';

const DPLAB = join(ROOT, 'bin', 'dplab.js');
const unavailable = netnsUnavailable(['tcpreplay', 'tcpdump', 'ethtool', 'python3']);

/** A child process whose stderr we watch for a line saying it is ready. */
class Proc {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<number | null>;
  constructor(cmd: string, args: string[]) {
    this.child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d: Buffer) => { this.stdout += d.toString(); });
    this.child.stderr!.on('data', (d: Buffer) => { this.stderr += d.toString(); });
    // 'close', not 'exit': at 'exit' the child's output may still be in the pipes (node's docs), and
    // under load a test read an empty stdout from a run that had written its report and exited 0.
    this.exited = new Promise((resolve) => this.child.on('close', (code) => resolve(code)));
  }

  async ready(pattern: RegExp, what: string, ms = 20000): Promise<void> {
    const until = Date.now() + ms;
    while (!pattern.test(this.stderr)) {
      if (this.child.exitCode !== null || Date.now() > until) {
        throw new Error(`${what} did not start: exit ${this.child.exitCode}; stderr: ${this.stderr}`);
      }
      await sleep(20);
    }
  }

  async stop(signal: NodeJS.Signals = 'SIGINT'): Promise<number | null> {
    if (this.child.exitCode === null) this.child.kill(signal);
    return this.exited;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A test network with IPv6 off on both ends (no neighbour discovery chatter) and no offloads. */
function liveNet(tag: string): TestNet {
  const net = new TestNet(tag);
  net.create();
  sh('sysctl', ['-qw', `net.ipv6.conf.${net.outside}.disable_ipv6=1`]);
  net.exec('sysctl', '-qw', `net.ipv6.conf.${net.inside}.disable_ipv6=1`);
  // Jumbo frames: every packet of a shipped capture fits; no segmentation or checksum offloads,
  // so what crosses the veth is one wire packet with valid checksums.
  net.ip('link', 'set', net.outside, 'mtu', '9000');
  net.ip('-n', net.ns, 'link', 'set', net.inside, 'mtu', '9000');
  sh('ethtool', ['-K', net.outside, 'tx', 'off', 'rx', 'off', 'tso', 'off', 'gso', 'off', 'gro', 'off']);
  net.exec('ethtool', '-K', net.inside, 'tx', 'off', 'rx', 'off', 'tso', 'off', 'gso', 'off', 'gro', 'off');
  return net;
}

interface Recorded {
  live: Record<string, any>;
  replay: Record<string, any>;
  /** Every packet dplab live wrote (forwarded and dropped), as hex, sorted. */
  seen: string[];
  /** Every packet tcpdump recorded, as hex, sorted. */
  recorded: string[];
  liveStderr: string;
}

/**
 * Run dplab live and tcpdump on the namespace's end, call `send`, then stop both and run dplab
 * replay on the recording. `tcpdumpArgs` narrow the recording to what the capture path can see.
 */
async function capture(net: TestNet, dir: string, name: string, liveArgs: string[], tcpdumpArgs: string[], send: () => void): Promise<Recorded> {
  const json = join(dir, `${name}.live.json`);
  const fwd = join(dir, `${name}.fwd.pcap`);
  const drop = join(dir, `${name}.drop.pcap`);
  const rec = join(dir, `${name}.rec.pcap`);
  const withWrite = !liveArgs.includes('--workers');
  const live = new Proc('ip', ['netns', 'exec', net.ns, process.execPath, DPLAB, 'live', net.inside, '--no-status', '--json', json,
    ...(withWrite ? ['--write', fwd, '--write-dropped', drop] : []), ...liveArgs]);
  const dump = new Proc('ip', ['netns', 'exec', net.ns, 'tcpdump', '-i', net.inside, '-nn', '-U', '-s', '0', '-B', '131072', '-w', rec, ...tcpdumpArgs]);
  try {
    await live.ready(/capturing on/, 'dplab live');
    await dump.ready(/listening on/, 'tcpdump');
    send();
    // The ring hands a block over 10 ms after its first packet; give both readers time to drain:
    // tcpdump (-U: a write per packet) is done when its file stops growing.
    await sleep(500);
    for (let last = -1, still = 0, until = Date.now() + 30000; still < 4 && Date.now() < until; await sleep(100)) {
      const size = existsSync(rec) ? statSync(rec).size : 0;
      still = size === last ? still + 1 : 0;
      last = size;
    }
  } finally {
    await dump.stop();
    await live.stop();
  }
  expect(live.child.exitCode, live.stderr).toBe(0);
  expect(dump.stderr).toMatch(/^0 packets dropped by kernel$/m);
  if (process.env.LIVE_DEBUG) console.log(name, dump.stderr, live.stderr);
  const replayJson = join(dir, `${name}.replay.json`);
  const r = spawnSync(process.execPath, [DPLAB, 'replay', rec, '--json', replayJson, '--no-progress', ...profileOf(liveArgs)], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  const seen = withWrite ? [...packetsOf(fwd), ...packetsOf(drop)].sort() : [];
  return {
    live: JSON.parse(readFileSync(json, 'utf8')),
    replay: JSON.parse(readFileSync(replayJson, 'utf8')),
    seen,
    recorded: packetsOf(rec).sort(),
    liveStderr: live.stderr,
  };
}

function profileOf(args: string[]): string[] {
  const k = args.indexOf('--profile');
  return k >= 0 ? ['--profile', args[k + 1]!] : [];
}

/** The packets of a capture as hex strings (their captured bytes). */
function packetsOf(file: string, skip = 0): string[] {
  const out: string[] = [];
  readAll(file, (b) => {
    for (let i = 0; i < b.count; i++) out.push(Buffer.from(b.bytes.subarray(b.off[i]! + skip, b.off[i]! + b.capLen[i]!)).toString('hex'));
  });
  return out;
}

/** What must agree between a live run and a replay of the same packets: all but times and names. */
function decisions(r: Record<string, any>, ip = false): Record<string, unknown> {
  const c = { ...r.capture };
  for (const k of ['firstTimestamp', 'lastTimestamp', 'captureSeconds']) delete c[k];
  if (ip) for (const k of ['linkTypes', 'bytes', 'capturedBytes']) delete c[k];
  return {
    capture: c,
    verdicts: r.verdicts,
    stageReports: r.stageReports,
    stageConfig: r.stageConfig,
    stages: r.stages.map((s: Record<string, unknown>) => ({ name: s.name, packets: s.packets, dropped: s.dropped })),
  };
}

function tcpreplay(net: TestNet, files: string[]): number {
  let sent = 0;
  for (const f of files) {
    const out = sh('tcpreplay', ['-t', '-i', net.outside, join(ROOT, f)]);
    const m = /Actual: (\d+) packets/.exec(out);
    if (!m) throw new Error(`tcpreplay said: ${out}`);
    expect(out).toMatch(/Failed packets:\s+0\b/);
    sent += Number(m[1]);
  }
  return sent;
}

/** Packets of shipped captures, as tcpreplay sends them (each frame's captured bytes). */
function framesOf(files: string[]): string[] {
  return files.flatMap((f) => packetsOf(join(ROOT, f))).sort();
}

// A mix: VLAN-tagged frames (the kernel strips the tag; the ring must put it back), QinQ (an
// 802.1ad outer tag), ARP, CDP/LLC, ICMP, TCP connections and SYN scans.
const MIX = ['captures/large/ppp_many-protocols.pcap', 'captures/vlan/ppp_VlanPackets.pcap', 'captures/vlan/zeek_http-qinq-0.pcap', 'captures/vlan/arkime_twovlan.pcap'];

describe('dplab live --capture packet (AF_PACKET ring)', () => {
  let dir = '';
  let net: TestNet | null = null;
  beforeAll(() => {
    if (unavailable) return;
    dir = mkdtempSync(join(tmpdir(), 'dplab-live-'));
    net = liveNet('lp');
  });
  afterAll(() => {
    net?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('sees exactly the frames tcpreplay sent, VLAN tags included, and decides as replay of tcpdump\'s recording', async () => {
    if (unavailable) throw new Error(`cannot run the live tests: ${unavailable}`);
    let sent = 0;
    const r = await capture(net!, dir, 'mix', [], [], () => { sent = tcpreplay(net!, MIX); });
    const frames = framesOf(MIX);
    expect(frames.length).toBe(sent);
    expect(r.recorded.length).toBe(sent);
    expect(r.live.capture.packets).toBe(sent);
    expect(r.seen).toEqual(frames);
    expect(r.recorded).toEqual(frames);
    expect(r.live.live.kernel.drops).toBe(0);
    expect(r.live.capture.vlanTagged).toBeGreaterThan(0);
    expect(decisions(r.live)).toEqual(decisions(r.replay));
    expect(r.live.verdicts.dropped).toBeGreaterThan(0);
  });

  it('with --profile iptables and a burst of 82k packets at top speed, nothing lost', async () => {
    if (unavailable) throw new Error(`cannot run the live tests: ${unavailable}`);
    const files = ['captures/large/zeek_echo-connections.pcap'];
    let sent = 0;
    const r = await capture(net!, dir, 'burst', ['--profile', 'iptables'], [], () => { sent = tcpreplay(net!, files); });
    expect(r.live.capture.packets).toBe(sent);
    expect(r.live.live.kernel.drops).toBe(0);
    expect(r.seen).toEqual(r.recorded);
    expect(decisions(r.live)).toEqual(decisions(r.replay));
  });

  it('--workers 2 (a PACKET_FANOUT group) gives the same verdicts and flows as one worker, and both workers get packets', async () => {
    if (unavailable) throw new Error(`cannot run the live tests: ${unavailable}`);
    const files = ['captures/large/zeek_echo-connections.pcap', 'captures/large/ppp_many-protocols.pcap'];
    let sent = 0;
    const r = await capture(net!, dir, 'fanout', ['--workers', '2'], [], () => { sent = tcpreplay(net!, files); });
    expect(r.live.capture.packets).toBe(sent);
    expect(r.live.workers).toBe(2);
    expect(r.live.live.kernel.drops).toBe(0);
    const [a, b] = r.live.live.workerPackets as number[];
    expect(a! + b!).toBe(sent);
    expect(Math.min(a!, b!)).toBeGreaterThan(sent / 10);
    // The flow table's peak cannot be merged exactly from live workers (see src/live/worker.ts):
    // the merged figure is the sum of their peaks, at least one table's.
    const peak = (x: Record<string, any>): number => x.stageReports.conntrack.peakEntries;
    expect(peak(r.live)).toBeGreaterThanOrEqual(peak(r.replay));
    const same = (x: Record<string, any>): Record<string, unknown> => {
      const d = decisions(x) as { stageReports: Record<string, Record<string, unknown>> };
      delete d.stageReports.conntrack!.peakEntries;
      return d;
    };
    expect(same(r.live)).toEqual(same(r.replay));
  });

  it('a ring that overflows loses packets, and says so: read + kernel drops = sent', async () => {
    if (unavailable) throw new Error(`cannot run the live tests: ${unavailable}`);
    // A 1 MiB ring (one block) and dplab stopped while 82k packets arrive: the kernel must drop.
    const live = new Proc('ip', ['netns', 'exec', net!.ns, process.execPath, DPLAB, 'live', net!.inside, '--no-status', '--ring-mb', '1', '--json', '-']);
    await live.ready(/capturing on/, 'dplab live');
    // ip netns exec becomes node (it execs): its pid is node's.
    process.kill(live.child.pid!, 'SIGSTOP');
    let sent = 0;
    try {
      sent = tcpreplay(net!, ['captures/large/zeek_echo-connections.pcap']);
      await sleep(300);
    } finally {
      process.kill(live.child.pid!, 'SIGCONT');
    }
    await sleep(1000);
    expect(await live.stop()).toBe(0);
    const r = JSON.parse(live.stdout);
    expect(r.live.kernel.drops).toBeGreaterThan(0);
    expect(r.capture.packets + r.live.kernel.drops).toBe(sent);
    expect(r.live.kernel.packets).toBe(sent);
    expect(live.stderr).toMatch(/packets were never seen by the pipeline/);
  });

  it('--count N stops after exactly N packets, --duration after its time; their captures are whole (tshark reads them)', async () => {
    if (unavailable) throw new Error(`cannot run the live tests: ${unavailable}`);
    const fwd = join(dir, 'count.pcap');
    const live = new Proc('ip', ['netns', 'exec', net!.ns, process.execPath, DPLAB, 'live', net!.inside, '--no-status', '--count', '1000', '--write', fwd, '--json', '-']);
    await live.ready(/capturing on/, 'dplab live');
    tcpreplay(net!, ['captures/large/zeek_echo-connections.pcap']);
    expect(await live.exited).toBe(0);
    const report = JSON.parse(live.stdout);
    expect(report.capture.packets).toBe(1000);
    expect(report.live.stoppedBy).toBe('count');
    expect(tsharkCount(fwd)).toBe(report.verdicts.forwarded);
    const timed = spawnSync('ip', ['netns', 'exec', net!.ns, process.execPath, DPLAB, 'live', net!.inside, '--no-status', '--duration', '0.5', '--json', '-'], { encoding: 'utf8' });
    expect(timed.status).toBe(0);
    expect(JSON.parse(timed.stdout).live.stoppedBy).toBe('duration');
    expect(timed.stderr).toMatch(/Live capture on .*stopped by duration/);
  });
});

describe('dplab live --capture raw (raw-socket)', () => {
  let dir = '';
  let net: TestNet | null = null;
  beforeAll(() => {
    if (unavailable) return;
    dir = mkdtempSync(join(tmpdir(), 'dplab-live-raw-'));
    net = liveNet('lr');
    net.ip('addr', 'add', '10.201.0.1/24', 'dev', net.outside);
    net.ip('-n', net.ns, 'addr', 'add', '10.201.0.2/24', 'dev', net.inside);
  });
  afterAll(() => {
    net?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('sees every IPv4 packet the namespace received and decides as replay of tcpdump\'s recording', async () => {
    if (unavailable) throw new Error(`cannot run the live tests: ${unavailable}`);
    // Inside: a TCP server that answers each connection and closes. Outside: TCP connections
    // (handshake, data, FIN), SYNs to a closed port, UDP datagrams, ICMP echo requests.
    const server = new Proc('ip', ['netns', 'exec', net!.ns, 'python3', '-c', `
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('10.201.0.2', 8080)); s.listen(64)
sys.stderr.write('serving\\n'); sys.stderr.flush()
while True:
    c, _ = s.accept(); c.recv(4096); c.sendall(b'HTTP/1.0 200 OK\\r\\n\\r\\nhello'); c.close()
`]);
    try {
      await server.ready(/serving/, 'the test server');
      const client = `
import socket, struct
for i in range(20):
    c = socket.create_connection(('10.201.0.2', 8080)); c.sendall(b'GET /%d HTTP/1.0\\r\\n\\r\\n' % i); c.recv(4096); c.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(300): u.sendto(b'x' * (i % 200 + 1), ('10.201.0.2', 5000 + i % 7))
for port in range(9000, 9030):
    t = socket.socket(); t.settimeout(0.5)
    try: t.connect(('10.201.0.2', port))
    except OSError: pass
    t.close()
def csum(b):
    if len(b) % 2: b += b'\\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
for seq in range(10):
    body = struct.pack('!BBHHH', 8, 0, 0, 77, seq) + b'ping'
    r.sendto(body[:2] + struct.pack('!H', csum(body)) + body[4:], ('10.201.0.2', 0))
`;
      const r = await capture(net!, dir, 'raw', ['--capture', 'raw'], ['-Q', 'in', 'ip'], () => {
        const out = spawnSync('python3', ['-c', client], { encoding: 'utf8' });
        if (out.status !== 0) throw new Error(`the test client failed: ${out.stderr}`);
      });
      // 20 connections of at least 5 inbound packets, 300 datagrams, 30 SYNs, 10 pings.
      expect(r.recorded.length).toBeGreaterThanOrEqual(20 * 5 + 300 + 30 + 10);
      expect(r.live.capture.packets).toBe(r.recorded.length);
      // The raw path gives IP packets: the recording's frames without their 14-byte Ethernet header.
      expect(r.seen).toEqual(packetsOf(join(dir, 'raw.rec.pcap'), 14).sort());
      expect(r.live.live.kernel.drops).toBe(0);
      expect(r.live.capture.linkTypes).toEqual({ '101/RAW': r.recorded.length });
      expect(decisions(r.live, true)).toEqual(decisions(r.replay, true));
    } finally {
      await server.stop('SIGKILL');
    }
  });

  it('a socket buffer that overflows loses packets, and says so: read + kernel drops = sent', async () => {
    if (unavailable) throw new Error(`cannot run the live tests: ${unavailable}`);
    // 100k TCP packets of dplab gen, addressed to the namespace, while dplab is stopped: more
    // than one socket's buffer holds. The namespace's answers are dropped before they leave.
    const n = net!;
    for (const k of ['all', 'default', n.inside]) n.exec('sysctl', '-qw', `net.ipv4.conf.${k}.rp_filter=0`);
    n.ip('-n', n.ns, 'route', 'add', 'default', 'dev', n.inside);
    n.exec('iptables', '-t', 'raw', '-A', 'OUTPUT', '-j', 'DROP');
    const gen = join(dir, 'flood.pcap');
    const local = join(dir, 'flood-local.pcap');
    sh(process.execPath, [DPLAB, 'gen', gen, '--packets', '100000', '--ipv6', '0', '--vlan', '0', '--udp', '0']);
    sh('tcprewrite', [`--enet-dmac=${n.insideMac}`, '--dstipmap=0.0.0.0/0:10.201.0.2/32', '--fixcsum', '-i', gen, '-o', local]);
    const live = new Proc('ip', ['netns', 'exec', n.ns, process.execPath, DPLAB, 'live', n.inside, '--capture', 'raw', '--no-status', '--json', '-']);
    await live.ready(/capturing on/, 'dplab live');
    process.kill(live.child.pid!, 'SIGSTOP');
    let sent = 0;
    try {
      const out = sh('tcpreplay', ['-t', '-i', n.outside, local]);
      sent = Number(/Actual: (\d+) packets/.exec(out)?.[1]);
      await sleep(300);
    } finally {
      process.kill(live.child.pid!, 'SIGCONT');
    }
    await sleep(1500);
    expect(await live.stop()).toBe(0);
    const r = JSON.parse(live.stdout);
    expect(sent).toBe(100000);
    expect(r.live.kernel.drops).toBeGreaterThan(0);
    expect(r.capture.packets + r.live.kernel.drops).toBe(sent);
  });
});

describe('dplab live: what it cannot do, in one line', () => {
  const run = (args: string[]): { status: number | null; stderr: string } => {
    const r = spawnSync(process.execPath, [DPLAB, 'live', ...args], { encoding: 'utf8' });
    return { status: r.status, stderr: r.stderr };
  };

  it('a missing interface, a bad option', () => {
    if (unavailable) throw new Error(`cannot run the live tests: ${unavailable}`);
    for (const kind of ['packet', 'raw']) {
      const r = run(['dplabnosuch0', '--capture', kind]);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/^dplab live: no interface "dplabnosuch0" here\. Pick one from "ip link".*\n$/);
    }
    expect(run(['lo', '--capture', 'pcap']).stderr).toMatch(/--capture is raw or packet/);
    expect(run(['lo', '--workers', '2', '--capture', 'raw']).status).toBe(1);
    expect(run([]).status).toBe(1);
  });

  it('an interface that is down', () => {
    if (unavailable) throw new Error(`cannot run the live tests: ${unavailable}`);
    const net = new TestNet('ld');
    try {
      net.create();
      net.ip('-n', net.ns, 'link', 'set', net.inside, 'down');
      for (const kind of ['packet', 'raw']) {
        const r = spawnSync('ip', ['netns', 'exec', net.ns, process.execPath, DPLAB, 'live', net.inside, '--capture', kind], { encoding: 'utf8' });
        expect(r.status).toBe(1);
        expect(r.stderr).toBe(`dplab live: interface ${net.inside} is down. Bring it up first: ip link set ${net.inside} up\n`);
      }
    } finally {
      net.destroy();
    }
  });

  it('an interface that goes down mid-capture ends it, with the report and the reason', async () => {
    if (unavailable) throw new Error(`cannot run the live tests: ${unavailable}`);
    const net = new TestNet('lg');
    try {
      net.create();
      const live = new Proc('ip', ['netns', 'exec', net.ns, process.execPath, DPLAB, 'live', net.inside, '--no-status', '--json', '-']);
      await live.ready(/capturing on/, 'dplab live');
      net.ip('-n', net.ns, 'link', 'set', net.inside, 'down');
      const code = await Promise.race([live.exited, sleep(10000).then(() => 'still running')]);
      if (code === 'still running') await live.stop('SIGKILL');
      expect(code).toBe(0);
      expect(JSON.parse(live.stdout).live.stoppedBy).toMatch(new RegExp(`^${net.inside} went down or away`));
    } finally {
      net.destroy();
    }
  });

  it('not root (no CAP_NET_RAW)', () => {
    if (unavailable) throw new Error(`cannot run the live tests: ${unavailable}`);
    for (const kind of ['packet', 'raw']) {
      const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', process.execPath, DPLAB, 'live', 'lo', '--capture', kind], { encoding: 'utf8' });
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/^dplab live: opening an? (AF_PACKET|raw) socket needs root or CAP_NET_RAW\. Run dplab live with sudo.*\n$/);
    }
  });
});
