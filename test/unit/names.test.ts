import { describe, expect, it } from 'vitest';
import { isValidIfName, validateIfName } from '../../kernel/names.js';

describe('interface names', () => {
  it.each(['eth0', 'br-0123456789a', 'veth.5', 'a', 'x'.repeat(15), 'tsb_1+x'])('accepts %j', (n) => {
    expect(() => validateIfName(n)).not.toThrow();
  });

  it.each([
    ['', /non-empty/],
    ['x'.repeat(16), /longer than 15/],
    ['é'.repeat(8), /longer than 15/], // 16 bytes in UTF-8
    ['.', /reserved/],
    ['..', /reserved/],
    ['a/b', /not allowed/],
    ['a:b', /not allowed/],
    ['a b', /not allowed/],
    ['a\nb', /not allowed/],
    ['$(reboot)', /not allowed/],
    ['é', /not allowed/],
    ['veth@if3', /not allowed/],
  ])('rejects %j', (n, msg) => {
    expect(() => validateIfName(n)).toThrow(msg);
    expect(isValidIfName(n)).toBe(false);
  });

  it('rejects non-strings', () => {
    expect(() => validateIfName(undefined)).toThrow();
    expect(() => validateIfName(5)).toThrow();
  });
});
