/** Buffered, synchronous writing to stdout that stops quietly when the reader goes away (| head). */
import { writeSync } from 'node:fs';
import { commas } from '../packet/format.js';

export class LineWriter {
  private buf = '';
  closed = false;
  constructor(private readonly fd = 1, private readonly limit = 1 << 16) {}

  line(s: string): void {
    this.buf += s + '\n';
    if (this.buf.length >= this.limit) this.flush();
  }

  flush(): void {
    if (this.closed || this.buf === '') return;
    const data = Buffer.from(this.buf);
    this.buf = '';
    let at = 0;
    while (at < data.length) {
      try {
        at += writeSync(this.fd, data, at);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN') continue;
        if (code === 'EPIPE') { this.closed = true; return; }
        throw e;
      }
    }
  }
}

/** A one-line progress bar on stderr, only when stderr is a terminal; redraws at most 4 times a second. */
export class Progress {
  private last = 0;
  private readonly on: boolean;
  private readonly start = Date.now();
  constructor(private readonly label: string, private readonly total: number, enabled = true) {
    this.on = enabled && process.stderr.isTTY === true && total > 0;
  }

  update(done: number, packets: number): void {
    if (!this.on) return;
    const now = Date.now();
    if (now - this.last < 250) return;
    this.last = now;
    const frac = Math.min(1, done / this.total);
    const width = 30;
    const fill = Math.round(frac * width);
    const secs = (now - this.start) / 1000;
    const rate = secs > 0 ? packets / secs : 0;
    const eta = frac > 0 ? secs / frac - secs : 0;
    process.stderr.write(`\r${this.label} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${(frac * 100).toFixed(0).padStart(3)}% `
      + `${commas(packets)} pkts ${formatRate(rate)} ETA ${eta.toFixed(0)}s   `);
  }

  end(): void {
    if (this.on && this.last !== 0) process.stderr.write('\r\x1b[K');
  }
}

export function formatRate(pps: number): string {
  if (pps >= 1e6) return `${(pps / 1e6).toFixed(2)} Mpps`;
  if (pps >= 1e3) return `${(pps / 1e3).toFixed(1)} kpps`;
  return `${pps.toFixed(0)} pps`;
}

export function formatBytes(n: number): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(2)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(2)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n} B`;
}

/** Render rows as aligned columns; numeric-looking cells are right-aligned. */
export function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map((c) => (typeof c === 'number' ? commas(c) : c)))];
  const widths = header.map((_, k) => Math.max(...cells.map((r) => (r[k] ?? '').length)));
  const numeric = header.map((_, k) => rows.length > 0 && rows.every((r) => typeof r[k] === 'number' || /^[-\d.,]+(\s?[%x])?$/.test(String(r[k]))));
  return cells
    .map((r) => r.map((c, k) => (numeric[k] ? c.padStart(widths[k]!) : c.padEnd(widths[k]!))).join('  ').trimEnd())
    .join('\n');
}
