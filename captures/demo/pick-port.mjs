#!/usr/bin/env node
// The source port a demo client connects from, so that dplab's dnat and ctlb pick the backend the
// router's kernel picks. A node's dataplane is given both directions of a connection: client -> VIP
// and the chosen backend's replies. The router (record.sh) chooses backends round robin (iptables
// -m statistic --mode nth, as ../lib/netns.sh programs it: connection k of a service goes to its
// backend k mod n); dplab chooses by a seeded hash of the connection's tuple (src/nat/services.ts). Searching the client's source port
// for one whose hash lands on backend k mod n makes the two agree, so every reply in the capture
// comes from the backend dplab bound the connection to (record.sh checks that with a replay).
//
// Usage: node pick-port.mjs PROTO CLIENT VIP VPORT K FROM
//   prints the first port >= FROM for which dplab's shipped services (profiles/rules/services.txt)
//   send PROTO CLIENT:port -> VIP:VPORT where the router sends the service's connection K (from 0)
//   of that service. Needs dist/ (npm ci).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { parseService, ServiceTable } = await import(join(root, 'dist', 'nat', 'services.js'));
const { symHash } = await import(join(root, 'dist', 'packet', 'hash.js'));

const [proto, client, vip, vport, k, from] = process.argv.slice(2);
const services = readFileSync(join(root, 'profiles', 'rules', 'services.txt'), 'utf8').split('\n')
  .map((l) => l.replace(/#.*/, '').trim()).filter((l) => l !== '')
  .map((l) => ({ ...parseService(l), where: 'services.txt' }));
const table = new ServiceTable(services);
const words = (a) => parseService(`${proto} ${a.includes(':') ? `[${a}]` : a}:1 -> ${a.includes(':') ? `[${a}]` : a}:1`).vip;
const c = words(client);
const v = words(vip);
const p = proto === 'tcp' ? 6 : 17;
const svc = table.vip(v.family, p, v.words, 0, Number(vport));
if (svc < 0) { console.error(`pick-port: ${proto} ${vip}:${vport} is not a service in profiles/rules/services.txt`); process.exit(1); }
const n = table.services[svc].backends.length;
const want = table.firstBackend[svc] + (Number(k) % n);
for (let port = Number(from); port < 65536; port++) {
  if (table.pick(svc, symHash(p, c.words, 0, v.words, 0, port, Number(vport))) === want) { console.log(port); process.exit(0); }
}
console.error(`pick-port: no port from ${from} up picks backend ${want}`);
process.exit(1);
