/**
 * Test networks: a veth pair with one end in a network namespace the test creates and deletes.
 * Only those interfaces ever carry the test's packets. Needs root (CI runs as root); a test that
 * cannot get its namespace fails saying why, never passes silently.
 */
import { execFileSync } from 'node:child_process';

export function sh(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], input });
}

/** Why the namespace tests cannot run here, or null when they can. */
export function netnsUnavailable(tools: string[]): string | null {
  if (process.getuid?.() !== 0) return 'network-namespace tests need root (run as root, as CI does)';
  for (const t of ['ip', ...tools]) {
    try { sh('sh', ['-c', `command -v ${t}`]); } catch { return `${t} is not installed (apt-get install iproute2 tcpreplay iptables)`; }
  }
  return null;
}

export class TestNet {
  readonly ns: string;
  /** The end in the root namespace (we inject here) and the end inside the namespace. */
  readonly outside: string;
  readonly inside: string;
  insideMac = '';

  constructor(tag: string) {
    const id = `${process.pid % 100000}${tag}`.slice(0, 9);
    this.ns = `dplab-${tag}-${process.pid}`;
    this.outside = `dpo${id}`;
    this.inside = `dpi${id}`;
  }

  ip(...args: string[]): string {
    return sh('ip', args);
  }

  exec(cmd: string, ...args: string[]): string {
    return sh('ip', ['netns', 'exec', this.ns, cmd, ...args]);
  }

  create(): void {
    this.ip('netns', 'add', this.ns);
    this.ip('link', 'add', this.outside, 'type', 'veth', 'peer', 'name', this.inside);
    this.ip('link', 'set', this.inside, 'netns', this.ns);
    this.ip('link', 'set', this.outside, 'up');
    this.ip('-n', this.ns, 'link', 'set', this.inside, 'up');
    this.ip('-n', this.ns, 'link', 'set', 'lo', 'up');
    this.insideMac = this.exec('cat', `/sys/class/net/${this.inside}/address`).trim();
  }

  destroy(): void {
    try { this.ip('netns', 'del', this.ns); } catch { /* already gone */ }
    try { this.ip('link', 'del', this.outside); } catch { /* went with the namespace */ }
  }
}

/**
 * A namespace set up as a middlebox running Linux conntrack: every IPv4/IPv6 packet injected on
 * the veth is forwarded (so its conntrack entry is confirmed) to a next hop whose MAC address is
 * nobody's, so the frames die on the veth's other end and reach no other address.
 */
export function conntrackMiddlebox(net: TestNet, localIPv6: string[] = []): void {
  const set = (k: string, v: string): void => { net.exec('sysctl', '-qw', `${k}=${v}`); };
  set('net.ipv4.ip_forward', '1');
  set('net.ipv6.conf.all.forwarding', '1');
  set('net.ipv4.conf.all.rp_filter', '0');
  set(`net.ipv4.conf.${net.inside}.rp_filter`, '0');
  set('net.ipv4.conf.all.accept_local', '1');
  set('net.netfilter.nf_conntrack_acct', '1');
  set('net.netfilter.nf_conntrack_tcp_be_liberal', '1');
  set('net.netfilter.nf_conntrack_tcp_loose', '1');
  set('net.netfilter.nf_conntrack_checksum', '0');
  net.ip('-n', net.ns, 'addr', 'add', '10.255.0.2/24', 'dev', net.inside);
  net.ip('-n', net.ns, '-6', 'addr', 'add', 'fd00:255::2/64', 'dev', net.inside, 'nodad');
  const nobody = '02:00:00:00:00:01';
  net.ip('-n', net.ns, 'neigh', 'add', '10.255.0.1', 'lladdr', nobody, 'dev', net.inside);
  net.ip('-n', net.ns, '-6', 'neigh', 'add', 'fd00:255::1', 'lladdr', nobody, 'dev', net.inside);
  net.ip('-n', net.ns, 'route', 'add', 'default', 'via', '10.255.0.1');
  net.ip('-n', net.ns, '-6', 'route', 'add', 'default', 'via', 'fd00:255::1');
  // IPv6 packets are not forwarded here (they vanish between PREROUTING and FORWARD on this
  // kernel), so they are delivered locally instead: the capture's addresses become the
  // namespace's own. Whatever the local stack answers (RSTs, unreachables) is dropped in the raw
  // table, before conntrack could count it.
  for (const a of localIPv6) net.ip('-n', net.ns, '-6', 'addr', 'add', `${a}/128`, 'dev', net.inside, 'nodad');
  net.exec('ip6tables', '-t', 'raw', '-A', 'OUTPUT', '-j', 'DROP');
  net.exec('iptables', '-t', 'raw', '-A', 'OUTPUT', '-j', 'DROP');
  // A rule that uses conntrack makes the kernel run it in this namespace.
  net.exec('iptables', '-A', 'FORWARD', '-m', 'conntrack', '--ctstate', 'INVALID,NEW,ESTABLISHED,RELATED', '-j', 'ACCEPT');
  net.exec('ip6tables', '-A', 'FORWARD', '-m', 'conntrack', '--ctstate', 'INVALID,NEW,ESTABLISHED,RELATED', '-j', 'ACCEPT');
}

export interface KernelEntry {
  proto: string;
  state: string;
  src: string; dst: string; sport: number; dport: number;
  packetsOrig: number; packetsReply: number;
  assured: boolean;
  unreplied: boolean;
}

/** Parse /proc/net/nf_conntrack of the namespace. */
export function kernelConntrack(net: TestNet): KernelEntry[] {
  const text = net.exec('cat', '/proc/net/nf_conntrack');
  const out: KernelEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const tok = line.trim().split(/\s+/);
    const proto = tok[2]!;
    const kv = tok.filter((t) => t.includes('='));
    const first = (k: string): string | undefined => kv.find((t) => t.startsWith(`${k}=`))?.slice(k.length + 1);
    const all = (k: string): string[] => kv.filter((t) => t.startsWith(`${k}=`)).map((t) => t.slice(k.length + 1));
    const state = proto === 'tcp' ? tok[5]! : '';
    const id = first('id');
    out.push({
      proto, state,
      src: first('src')!, dst: first('dst')!,
      sport: Number(first('sport') ?? id ?? 0), dport: Number(first('dport') ?? id ?? 0),
      packetsOrig: Number(all('packets')[0] ?? 0), packetsReply: Number(all('packets')[1] ?? 0),
      assured: line.includes('[ASSURED]'),
      unreplied: line.includes('[UNREPLIED]'),
    });
  }
  return out;
}
