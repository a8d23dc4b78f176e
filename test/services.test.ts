/**
 * The service table's endpoint lookups, for tables built one after another in one process (every
 * pipeline of a compare builds its own): tables over the same endpoints share their filter, and a
 * table over other endpoints must neither see the first table's nor lose its own. Expected values
 * are the service lines themselves.
 */
import { describe, expect, it } from 'vitest';
import { parseService, ServiceTable, type Service } from '../src/nat/services.js';

function table(lines: string[]): ServiceTable {
  return new ServiceTable(lines.map((line, k) => {
    const r = parseService(line);
    if (typeof r === 'string') throw new Error(r);
    return { ...r, where: `test:${k + 1}` } satisfies Service;
  }));
}

/** (family, words, port) of an IPv4 endpoint as the batch holds it: the address as a host-order u32 in word 0. */
function v4(a: string, port: number): [number, Uint32Array, number] {
  const [w, x, y, z] = a.split('.').map(Number) as [number, number, number, number];
  return [4, new Uint32Array([(((w << 24) | (x << 16) | (y << 8) | z) >>> 0), 0, 0, 0]), port];
}

describe('service tables built one after another', () => {
  it('each finds its own VIPs and backends and none of the other\'s', () => {
    const a = table(['tcp 10.96.0.10:80 -> 10.88.2.2:8080 10.88.2.3:8080']);
    const b = table(['udp 10.96.0.53:53 -> 10.88.3.2:5353']);
    const a2 = table(['tcp 10.96.0.10:80 -> 10.88.2.2:8080 10.88.2.3:8080']);
    const look = (t: ServiceTable, proto: number, addr: string, port: number) => {
      const [family, words, p] = v4(addr, port);
      return { vip: t.vip(family, proto, words, 0, p), endpoint: t.isEndpoint(family, proto, words, 0, p) };
    };
    for (const t of [a, a2]) {
      expect(look(t, 6, '10.96.0.10', 80)).toEqual({ vip: 0, endpoint: true });
      expect(look(t, 6, '10.88.2.3', 8080)).toEqual({ vip: -1, endpoint: true });
      expect(look(t, 17, '10.96.0.53', 53)).toEqual({ vip: -1, endpoint: false });
      expect(look(t, 6, '10.96.0.10', 81)).toEqual({ vip: -1, endpoint: false });
    }
    expect(look(b, 17, '10.96.0.53', 53)).toEqual({ vip: 0, endpoint: true });
    expect(look(b, 17, '10.88.3.2', 5353)).toEqual({ vip: -1, endpoint: true });
    expect(look(b, 6, '10.96.0.10', 80)).toEqual({ vip: -1, endpoint: false });
    expect(look(b, 6, '10.88.2.2', 8080)).toEqual({ vip: -1, endpoint: false });
  });
});
