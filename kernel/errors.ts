// The project's error vocabulary. It sits in the lowest TypeScript layer so that every layer
// above (ipam, drivers, core, the protocol front-ends) can raise and recognise the same codes
// without importing upward; cnm/ and cni/ map codes to Docker's {"Err"} and CNI error numbers.
//
// Typed failures of the kernel layer. Callers branch on `code` ('EEXIST', 'ENODEV', …) the way Go
// callers write errors.Is(err, unix.EEXIST); the message names the operation, its target and, when
// the kernel gave one, its extended-ack explanation.

import { constants } from 'node:os';

// Several names share a number (EAGAIN/EWOULDBLOCK, ENOTSUP/EOPNOTSUPP); the first listed wins,
// which is the name strace and the kernel headers use.
const ERRNO_NAMES = new Map<number, string>();
for (const [name, num] of Object.entries(constants.errno)) if (!ERRNO_NAMES.has(num)) ERRNO_NAMES.set(num, name);
// Linux errnos that netlink returns and Node's table lacks.
const LINUX_EXTRA: Record<number, string> = { 54: 'EXFULL' };
for (const [num, name] of Object.entries(LINUX_EXTRA)) if (!ERRNO_NAMES.has(Number(num))) ERRNO_NAMES.set(Number(num), name);

/** What a bare errno means in netlink terms, when the kernel sends no extended ack of its own. */
const NETLINK_HINTS: Record<string, string> = {
  EXFULL: 'no free port number: a Linux bridge holds at most 1023 ports',
};

export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `E${errno}`;
}

export const ERROR_CODES = [
  'INVALID_ARGUMENT', // malformed input, refused before any state changes
  'UNSUPPORTED_OPTION', // a driver or IPAM option we do not know
  'NOT_FOUND', // a network, endpoint or pool the caller named does not exist
  'ALREADY_EXISTS', // a name or id that is taken
  'POOL_OVERLAP', // a requested subnet overlaps one in use
  'POOL_EXHAUSTED', // no address (or default pool) left
  'ADDRESS_IN_USE', // a requested address is taken
  'ADDRESS_OUT_OF_RANGE', // a requested address is outside the pool
  'PORT_IN_USE', // a host port is published already
  'TRY_AGAIN', // transient: a lock or a peer is busy
  'UNAVAILABLE', // the cluster store (etcd) cannot be reached; retry when it is back
  'KERNEL', // the kernel refused (see KernelError)
  'INTERNAL', // a bug or an unexpected state
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** An error with a code from ERROR_CODES and a message a user can act on. */
export class NetError extends Error {
  readonly netCode: ErrorCode;
  constructor(netCode: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'NetError';
    this.netCode = netCode;
  }
}

export function netCodeOf(e: unknown): ErrorCode {
  if (e instanceof NetError) return e.netCode;
  if (e instanceof KernelError) return 'KERNEL';
  if (e instanceof InvalidArgumentError) return 'INVALID_ARGUMENT';
  return 'INTERNAL';
}

export class KernelError extends Error {
  readonly errno: number;
  readonly code: string;
  /** What we asked for, e.g. RTM_NEWLINK or setns. */
  readonly op: string;
  /** What it was about, e.g. link "br-abc". */
  readonly target: string;
  /** The kernel's own explanation (netlink extended ack), when it sent one. */
  readonly extack?: string;

  constructor(errno: number, op: string, target: string, extack?: string) {
    const code = errnoName(errno);
    const why = extack ?? NETLINK_HINTS[code];
    super(`${op} ${target}: ${code}${why ? ` (${why})` : ''}`);
    this.name = 'KernelError';
    this.errno = errno;
    this.code = code;
    this.op = op;
    this.target = target;
    if (extack) this.extack = extack;
  }
}

/** Input that we reject before any syscall (bad interface name, malformed address, …). */
export class InvalidArgumentError extends Error {
  readonly code = 'EINVAL';
  constructor(message: string) {
    super(message);
    this.name = 'InvalidArgumentError';
  }
}

export function isKernelError(e: unknown, code?: string): e is KernelError {
  return e instanceof KernelError && (code === undefined || e.code === code);
}

/** The link (or namespace) is gone: what a tolerant delete ignores. */
export function isNotFound(e: unknown): boolean {
  return e instanceof KernelError && (e.code === 'ENODEV' || e.code === 'ENOENT' || e.code === 'ESRCH');
}
