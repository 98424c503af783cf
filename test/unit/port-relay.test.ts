// The native userland relay on loopback. TCP: bytes both ways, half-close, a container end that
// refuses, many connections at once, close() cutting what it carries. UDP: a flow per client.

import { createHash, randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { isLoopback6, natForwarded, needsRelay } from '../../drivers/shared/ports.js';
import { openPortRelay, type PortRelay } from '../../kernel/port-relay.js';

const servers: Server[] = [];
const relays: PortRelay[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
  for (const r of relays.splice(0)) r.close();
});

/** A "container": reads everything until the client's FIN, then answers with the sha256 and what it got's length. */
async function upstream(): Promise<number> {
  const server = createServer({ allowHalfOpen: true }, (c) => {
    const h = createHash('sha256');
    let n = 0;
    c.on('data', (d: Buffer) => {
      h.update(d);
      n += d.length;
    });
    c.on('end', () => c.end(`${n} ${h.digest('hex')}`));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '::1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Sends payload through [::1]:port, half-closes, returns the answer (or the error code). */
function exchange(port: number, payload: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const c = connect({ host: '::1', port, allowHalfOpen: true });
    let got = '';
    c.on('connect', () => c.end(payload));
    c.on('data', (d) => (got += d));
    c.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    c.on('close', () => resolve(got));
  });
}

describe('native port relay: TCP', () => {
  it('carries 4 MiB each way intact and the answer sent after the client’s FIN (IPv6 front, IPv4 back)', async () => {
    const target = await upstream();
    const port = await freePort();
    relays.push(openPortRelay('tcp', '::1', port, { ip: '127.0.0.1', port: target }));
    const payload = randomBytes(4 << 20);
    const answer = await exchange(port, payload);
    expect(answer).toBe(`${payload.length} ${createHash('sha256').update(payload).digest('hex')}`);
  });

  it('a container end that refuses ends the client’s connection at once, with nothing', async () => {
    const dead = await freePort(); // nothing listens there
    const port = await freePort();
    relays.push(openPortRelay('tcp', '::1', port, { ip: '::1', port: dead }));
    const t = performance.now();
    const answer = await exchange(port, Buffer.from('hello'));
    expect(['', 'ECONNRESET', 'EPIPE']).toContain(answer);
    expect(performance.now() - t).toBeLessThan(2000);
  });

  it('a port already listened on is refused; close() stops listening and cuts open connections', async () => {
    const held = createServer();
    servers.push(held);
    await new Promise<void>((r) => held.listen(0, '::1', r));
    const taken = (held.address() as AddressInfo).port;
    expect(() => openPortRelay('tcp', '::1', taken, { ip: '127.0.0.1', port: 1 })).toThrow(expect.objectContaining({ code: 'EADDRINUSE' }));

    // A container end that never answers: the client's connection stays open until close().
    const silent = createServer(() => undefined);
    servers.push(silent);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = await freePort();
    const relay = openPortRelay('tcp', '::1', port, { ip: '127.0.0.1', port: (silent.address() as AddressInfo).port });
    const c = connect({ host: '::1', port });
    await new Promise((r) => c.on('connect', r));
    const closed = new Promise((r) => c.on('close', r));
    c.on('error', () => undefined);
    await new Promise((r) => setTimeout(r, 50));
    relay.close();
    await closed;
    expect(await exchange(port, Buffer.from('x'))).toBe('ECONNREFUSED');
  });

  it('64 connections at once, each with its own 256 KiB, each answered with its own digest; none left open', async () => {
    const target = await upstream();
    const port = await freePort();
    const relay = openPortRelay('tcp', '::1', port, { ip: '127.0.0.1', port: target });
    relays.push(relay);
    const payloads = Array.from({ length: 64 }, () => randomBytes(256 << 10));
    const answers = await Promise.all(payloads.map((p) => exchange(port, p)));
    expect(answers).toEqual(payloads.map((p) => `${p.length} ${createHash('sha256').update(p).digest('hex')}`));
    // The relay thread closes a connection just after passing on the last FIN: give it that moment.
    for (let i = 0; i < 100 && relay.stats().active > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(relay.stats()).toEqual({ active: 0, accepted: 64 });
  });
});

describe('native port relay: UDP', () => {
  /** An IPv4 "container" answering every datagram with "echo <payload> from <its sender's port>". */
  async function echo(): Promise<{ port: number; close(): void }> {
    const s = createSocket('udp4');
    s.on('message', (m, r) => s.send(`echo ${m} from ${r.port}`, r.port, r.address));
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
    return { port: s.address().port, close: () => s.close() };
  }

  async function freeUdpPort(): Promise<number> {
    const s = createSocket('udp6');
    await new Promise<void>((r) => s.bind(0, '::1', r));
    const port = s.address().port;
    await new Promise<void>((r) => s.close(() => r()));
    return port;
  }

  /** Sends from a fresh client socket and waits for one reply (or '' after 500 ms). */
  async function ask(client: Socket, port: number, msg: string): Promise<string> {
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(''), 500);
      client.once('message', (m) => {
        clearTimeout(t);
        resolve(String(m));
      });
      client.send(msg, port, '::1');
    });
  }

  it('each client gets its own flow to the container and its own replies; close() ends them all', async () => {
    const target = await echo();
    const port = await freeUdpPort();
    const relay = openPortRelay('udp', '::1', port, { ip: '127.0.0.1', port: target.port });
    const clients = await Promise.all([0, 1, 2].map(async () => {
      const c = createSocket('udp6');
      await new Promise<void>((r) => c.bind(0, '::1', r));
      return c;
    }));
    try {
      const first = await Promise.all(clients.map((c, i) => ask(c, port, `hi${i}`)));
      // One flow (one source port at the container) per client, kept for its later datagrams.
      const ports = first.map((a) => a.split(' from ')[1]);
      expect(first.map((a) => a.split(' from ')[0])).toEqual(['echo hi0', 'echo hi1', 'echo hi2']);
      expect(new Set(ports).size).toBe(3);
      expect((await ask(clients[1]!, port, 'again')).split(' from ')[1]).toBe(ports[1]);
      expect(relay.stats()).toEqual({ active: 3, accepted: 3 });
      // The port is the relay's: another socket cannot bind it.
      const other = createSocket('udp6');
      await expect(new Promise((resolve, reject) => {
        other.once('error', reject);
        other.bind(port, '::1', () => resolve('bound'));
      })).rejects.toMatchObject({ code: 'EADDRINUSE' });
      other.close();
      relay.close();
      expect(await ask(clients[0]!, port, 'after')).toBe('');
    } finally {
      for (const c of clients) c.close();
      target.close();
      relay.close();
    }
  });
});

describe('which mappings the relay serves', () => {
  const p6 = (hostIp: string, containerIp: string, proto: 'tcp' | 'udp' | 'sctp' = 'tcp') => ({ proto, family: 6 as const, hostIp, containerIp });

  it('every spelling of ::1 is loopback: relayed, never a NAT rule', () => {
    for (const lo of ['::1', '0::1', '0:0:0:0:0:0:0:1', '::0:1']) {
      expect(isLoopback6(lo)).toBe(true);
      expect(natForwarded(p6(lo, 'fd00::5'))).toBe(false);
      expect(needsRelay(p6(lo, 'fd00::5'))).toBe(true);
    }
    for (const other of ['::', '::2', 'fd00::1', '127.0.0.1', '0.0.0.1']) expect(isLoopback6(other)).toBe(false);
  });

  it('NAT carries same-family mappings; the relay [::] (for ::1) and IPv6 to IPv4; SCTP never relayed', () => {
    expect(natForwarded(p6('fd00::1', 'fd00::5'))).toBe(true);
    expect(needsRelay(p6('fd00::1', 'fd00::5'))).toBe(false);
    expect(natForwarded(p6('::', 'fd00::5'))).toBe(true);
    expect(needsRelay(p6('::', 'fd00::5'))).toBe(true);
    expect(natForwarded(p6('::', '10.0.0.5'))).toBe(false);
    expect(needsRelay(p6('::', '10.0.0.5', 'udp'))).toBe(true);
    expect(needsRelay(p6('::1', 'fd00::5', 'sctp'))).toBe(false);
    expect(needsRelay({ proto: 'tcp', family: 4, hostIp: '0.0.0.0', containerIp: '10.0.0.5' })).toBe(false);
  });
});
