/**
 * The HTML report of compare and sweep (issue 10), opened in headless Chromium (Debian's chromium,
 * installed by the README's test command): the page renders, every chart it should draw has data,
 * no error reached the console, and it fetches nothing (self-contained). A screenshot of each is
 * kept in test/artifacts/ (not committed) for a person to look at.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { dplab, ROOT } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'dplab-html-'));
const ARTIFACTS = join(ROOT, 'test/artifacts');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
// The flags this machine's notes give for a closed network (no background fetches), as root.
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];

function chromium(args: string[]): string {
  if (!CHROMIUM) throw new Error('chromium is not installed: apt-get install -y chromium (the README\'s test command installs it)');
  const profile = mkdtempSync(join(dir, 'profile-'));
  const r = spawnSync(CHROMIUM, [...FLAGS, `--user-data-dir=${profile}`, ...args], { encoding: 'utf8', timeout: 90_000, maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`chromium failed (${r.status ?? r.signal}): ${r.stderr.slice(-500)}`);
  return r.stdout;
}

function check(page: string, charts: number, shot: string): void {
  const html = readFileSync(page, 'utf8');
  // Self-contained: no script, style or image from elsewhere.
  expect(html).not.toMatch(/<(script|link|img)[^>]+(src|href)=["']?(https?:)?\/\//i);
  const dom = chromium(['--virtual-time-budget=5000', '--dump-dom', `file://${page}`]);
  const body = /<body[^>]*>/.exec(dom)?.[0] ?? '';
  expect(body, 'the page recorded what it drew').toMatch(/data-charts="\d+"/);
  expect(body).toContain(`data-charts="${charts}"`);
  const errors = /<div id="errors">([\s\S]*?)<\/div>/.exec(dom)?.[1] ?? '';
  expect(errors, 'errors the page met').toBe('');
  expect(body).toContain('data-errors="0"');
  // uPlot drew into a canvas of real size in every chart container.
  expect((dom.match(/<canvas[^>]*width="[1-9]\d*"/g) ?? []).length).toBeGreaterThanOrEqual(charts);
  mkdirSync(ARTIFACTS, { recursive: true });
  chromium(['--window-size=1200,1400', `--screenshot=${join(ARTIFACTS, shot)}`, `file://${page}`]);
  expect(statSync(join(ARTIFACTS, shot)).size).toBeGreaterThan(10_000);
}


describe('the HTML report', () => {
  it('compare: renders the stage chart, with no errors, fetching nothing', () => {
    const page = join(dir, 'compare.html');
    const r = dplab('compare', join(ROOT, 'captures/nat/kube-proxy-client.pcap'), '--html', page, '--repeat', '1');
    expect(r.status, r.stderr).toBe(0);
    check(page, 1, 'compare.png');
    expect(readFileSync(page, 'utf8')).toContain('Verdict differences');
  });

  it('sweep: renders the curves', () => {
    const page = join(dir, 'sweep.html');
    const r = dplab('sweep', 'packets-per-flow', '--values', '5,50', '--packets', '10000', '--profiles', 'iptables,ebpf', '--html', page);
    expect(r.status, r.stderr).toBe(0);
    check(page, 1, 'sweep.png');
  });
});
