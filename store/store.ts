// The store: a transactional key/value space of JSON records, shared by the daemon and concurrent
// CNI invocations. Keys are '/'-separated paths ("ipam/pool/…"); list() returns them in byte order.
//
// A transaction body is a synchronous function of a Tx and may run more than once (an etcd
// backend retries it on conflict, like etcd's STM), so it must only read and write through the Tx
// and must not have side effects of its own.

export interface ListOptions {
  /** First key to return (inclusive); must start with the prefix. */
  start?: string;
  limit?: number;
}

export interface Tx {
  get<T>(key: string): T | undefined;
  has(key: string): boolean;
  put<T>(key: string, value: T): void;
  /** Removes the key; a missing key is fine. Returns whether it existed. */
  delete(key: string): boolean;
  /** Entries whose key starts with prefix, in key order. */
  list<T>(prefix: string, opts?: ListOptions): Array<[string, T]>;
  /** Keys only, in key order: cheaper than list() when values are not needed. */
  keys(prefix: string, opts?: ListOptions): string[];
  count(prefix: string): number;
}

export interface Store {
  /** Runs fn atomically: all its writes commit together or none do. */
  transact<T>(fn: (tx: Tx) => T): Promise<T>;
  /** Reads without taking the write lock. */
  read<T>(fn: (tx: Tx) => T): Promise<T>;
  close(): Promise<void>;
  /** Where the state lives, for logs and `tsnet doctor`. */
  readonly location: string;
}

/** The last code point, used as an exclusive upper bound for prefix scans. */
export const KEY_END = '\u{10ffff}';
