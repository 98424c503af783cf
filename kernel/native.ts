// Loads the C++ addon (native/src) and gives it exact types. The only module that touches native/.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface NativeError extends Error {
  errno: number;
  syscall: string;
}

/** A netlink multicast subscription read by a native thread (native/src/netlink_watch.h). */
export interface NativeNetlinkWatch {
  close(): void;
}

/** A UDP socket answered from a table by a native thread (native/src/udp_responder.h). */
export interface NativeUdpResponder {
  send(buf: Buffer, address: string, port: number): void;
  setAnswer(key: Buffer, records: Buffer[]): void;
  setClients(prefixes: Array<{ address: Buffer; bits: number }>): void;
  stats(): { answered: number; handedOver: number; dropped: number };
  localPort(): number | null;
  close(): void;
}

/** The thread that carries one netlink socket's exchanges (native/src/netlink_lane.h); owns the socket. */
export interface NativeNetlinkLane {
  transact(seq: number, request: Buffer): Promise<Buffer>;
  transactNow(seq: number, request: Buffer): Buffer | undefined;
  /** A /proc/sys write in the lane's namespace, run in order with its exchanges. */
  sysctl(procPath: string, value: string): Promise<Buffer>;
  close(): void;
}

/** A port relayed to a target by the native relay thread (native/src/port_relay.h). */
export interface NativePortRelay {
  close(): void;
  stats(): { active: number; accepted: number };
}

export interface NativeBinding {
  PortRelay: new (listenIp: string, port: number, targetIp: string, targetPort: number, proto: 'tcp' | 'udp') => NativePortRelay;
  NetlinkLane: new (fd: number, portId: number, nsPath: string | null) => NativeNetlinkLane;
  UdpResponder: new (address: string, port: number, onQuery: (msg: Buffer, address: string, port: number) => void) => NativeUdpResponder;
  NetlinkWatch: new (nsPath: string | null, groups: number, onData: (buf: Buffer | null) => void) => NativeNetlinkWatch;
  /** protocol: NETLINK_ROUTE (0, the default) or NETLINK_NETFILTER (12). */
  openNetlink(nsPath: string | null, protocol?: number): Promise<{ fd: number; portId: number }>;
  closeFd(fd: number): void;
  /** A bound, never-listening TCP socket holding ip:port; the caller closes the fd. */
  reserveTcpPort(ip: string, port: number): number;
  sysctl(nsPath: string | null, procPath: string, value: string | null): Promise<string>;
  netnsCreate(path: string): Promise<void>;
  netnsDelete(path: string): Promise<void>;
  socketIn(nsPath: string | null, family: number, type: number, protocol: number): Promise<number>;
}

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) || !existsSync(join(dir, 'binding.gyp'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the tsnet package root (binding.gyp)');
    dir = up;
  }
  return dir;
}

let cached: NativeBinding | undefined;

export function native(): NativeBinding {
  if (cached) return cached;
  const root = packageRoot();
  const candidates = ['build/Release/tsnet_native.node', 'build/Debug/tsnet_native.node'].map((p) => join(root, p));
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new Error(`tsnet native addon not built; looked in: ${candidates.join(', ')}. Run "npm run build:native".`);
  }
  cached = createRequire(import.meta.url)(found) as NativeBinding;
  return cached;
}

export function isNativeError(e: unknown): e is NativeError {
  return e instanceof Error && typeof (e as Partial<NativeError>).errno === 'number';
}
