/**
 * What a live capture path gives the run loop: a PacketSource (fill/release, as a file reader)
 * that also waits for packets, stops on request and reads the kernel's own drop counter.
 */
import { existsSync, readFileSync } from 'node:fs';
import type { InterfaceInfo, PacketSource } from '../capture/source.js';

/** One clear line for the user (what is wrong, what to do) and exit status 1. */
export class LiveError extends Error {
  constructor(message: string, readonly hint: string) {
    super(message);
    this.name = 'LiveError';
  }
}

export type CaptureKind = 'raw' | 'packet';

/** The kernel's view of the capture: what it dropped before dplab could read it. */
export interface KernelCounts {
  /** Packets the kernel dropped for this capture's sockets (ring or receive buffer full). */
  drops: number;
  /** Packets the kernel counted for the sockets (AF_PACKET: received + dropped), when it says. */
  packets?: number;
  /** Where the figures come from. */
  source: string;
}

export interface LiveSource extends PacketSource {
  readonly kind: CaptureKind;
  /** Resolves when packets may be ready, after `ms`, or at once after wake()/end(). */
  wait(ms: number): Promise<void>;
  /** Make a pending wait() return now (a signal arrived). */
  wake(): void;
  /** Deliver nothing more: fill returns 0 and `done` is true (--duration). */
  end(): void;
  /** The kernel's drop counters so far (cumulative). */
  kernel(): KernelCounts;
  /** Set when the capture ended by itself (the interface went down or away): why. */
  readonly stopReason: string | null;
}

export interface LiveOptions {
  iface: string;
  /** Stop after this many packets (--count). */
  limit?: number;
}

/** The interface must exist in this network namespace and be up; else one line saying what to do. */
export function checkInterface(name: string): void {
  if (name.includes('/') || name === '.' || name === '..' || name.length > 15) {
    throw new LiveError(`"${name}" is not an interface name`, 'Give a name from "ip link", e.g. eth0 or veth0');
  }
  const dir = `/sys/class/net/${name}`;
  if (!existsSync(dir)) {
    throw new LiveError(`no interface "${name}" here`, 'Pick one from "ip link" (an interface inside a network namespace: ip netns exec NS dplab live IFACE)');
  }
  let flags = 1;
  try { flags = parseInt(readFileSync(`${dir}/flags`, 'utf8'), 16); } catch { /* unreadable: let the socket say */ }
  if ((flags & 1) === 0) throw new LiveError(`interface ${name} is down`, `Bring it up first: ip link set ${name} up`);
}

export function permissionError(what: string): LiveError {
  return new LiveError(`opening ${what} needs root or CAP_NET_RAW`,
    'Run dplab live with sudo, or give node the capabilities once: sudo setcap cap_net_raw,cap_net_admin+ep "$(readlink -f "$(command -v node)")"');
}

export function liveInterface(name: string, linkType: number): InterfaceInfo {
  return { name, linkType, snapLen: 262144, unitsPerSecond: 1e9, tsOffset: 0 };
}
