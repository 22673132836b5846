import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { sha256Hex } from './sha256-hex.js';

describe('sha256Hex', () => {
  it('matches node:crypto on the FIPS 180-4 examples, block boundaries and UTF-8 paths', () => {
    expect(sha256Hex('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(sha256Hex('')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    const inputs = ['abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq', '/etc/weft/weft.yaml', '/tmp/конфиг/ß-😀.yaml'];
    for (let n = 50; n <= 130; n++) inputs.push('x'.repeat(n));
    for (const text of inputs) expect(sha256Hex(text), text).toBe(createHash('sha256').update(text).digest('hex'));
  });
});
