// Interface name rules, checked before the kernel is asked. The kernel's dev_valid_name() allows
// 1–15 bytes without '/', ':' or whitespace and not "." or ".."; we also refuse control and
// anything outside letters, digits and "_.+-": other characters (shell metacharacters, '@' that
// iproute2 prints as a separator, control or non-ASCII bytes) only arrive by mistake or malice.

import { InvalidArgumentError } from './errors.js';

export const IFNAMSIZ = 16;

export function validateIfName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || name.length === 0) throw new InvalidArgumentError('interface name must be a non-empty string');
  if (Buffer.byteLength(name, 'utf8') > IFNAMSIZ - 1) {
    throw new InvalidArgumentError(`interface name ${JSON.stringify(name)} is longer than ${IFNAMSIZ - 1} bytes`);
  }
  if (name === '.' || name === '..') throw new InvalidArgumentError(`interface name ${JSON.stringify(name)} is reserved`);
  if (!/^[A-Za-z0-9_.+-]+$/.test(name)) {
    throw new InvalidArgumentError(`interface name ${JSON.stringify(name)} contains a character not allowed in interface names`);
  }
}

export function isValidIfName(name: string): boolean {
  try {
    validateIfName(name);
    return true;
  } catch {
    return false;
  }
}
