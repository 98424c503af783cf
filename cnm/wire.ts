// Checks on Docker's request bodies: the fields we rely on, with errors that name the field.

import { NetError } from '../kernel/errors.js';

export function str(body: Record<string, any>, key: string, opts: { optional?: boolean } = {}): string {
  const v = body[key];
  if (v === undefined || v === null || v === '') {
    if (opts.optional) return '';
    throw new NetError('INVALID_ARGUMENT', `missing ${key}`);
  }
  if (typeof v !== 'string') throw new NetError('INVALID_ARGUMENT', `${key} must be a string`);
  return v;
}

export function id(body: Record<string, any>, key: string): string {
  const v = str(body, key);
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(v)) throw new NetError('INVALID_ARGUMENT', `${key} is not a valid id`);
  return v;
}

export function obj(body: Record<string, any>, key: string): Record<string, any> {
  const v = body[key];
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new NetError('INVALID_ARGUMENT', `${key} must be an object`);
  return v;
}

export function arr(body: Record<string, any>, key: string): Array<Record<string, any>> {
  const v = body[key];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new NetError('INVALID_ARGUMENT', `${key} must be an array`);
  return v;
}
