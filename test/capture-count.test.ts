import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CAPTURES, captureIndex, cleanCaptures, readAll } from './helpers.js';

describe('reading the shipped captures', () => {
  it('ships every capture the index lists', () => {
    expect(captureIndex().length).toBeGreaterThanOrEqual(180);
  });

  for (const row of cleanCaptures()) {
    it(`${row.file}: reads as many packets as capinfos counted (${row.packets})`, () => {
      const src = readAll(join(CAPTURES, row.file));
      expect(src.error).toBeNull();
      expect(src.packets).toBe(row.packets);
    });
  }
});
