// The native userland TCP relay on loopback: bytes both ways, half-close, a container end that
// refuses, many connections at once, and close() cutting what it carries.

import { createHash, randomBytes } from 'node:crypto';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { openTcpRelay, type TcpRelay } from '../../kernel/tcp-relay.js';

const servers: Server[] = [];
const relays: TcpRelay[] = [];
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

describe('native TCP relay', () => {
  it('carries 4 MiB each way intact and the answer sent after the client’s FIN (IPv6 front, IPv4 back)', async () => {
    const target = await upstream();
    const port = await freePort();
    relays.push(openTcpRelay('::1', port, { ip: '127.0.0.1', port: target }));
    const payload = randomBytes(4 << 20);
    const answer = await exchange(port, payload);
    expect(answer).toBe(`${payload.length} ${createHash('sha256').update(payload).digest('hex')}`);
  });

  it('a container end that refuses ends the client’s connection at once, with nothing', async () => {
    const dead = await freePort(); // nothing listens there
    const port = await freePort();
    relays.push(openTcpRelay('::1', port, { ip: '::1', port: dead }));
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
    expect(() => openTcpRelay('::1', taken, { ip: '127.0.0.1', port: 1 })).toThrow(expect.objectContaining({ code: 'EADDRINUSE' }));

    // A container end that never answers: the client's connection stays open until close().
    const silent = createServer(() => undefined);
    servers.push(silent);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = await freePort();
    const relay = openTcpRelay('::1', port, { ip: '127.0.0.1', port: (silent.address() as AddressInfo).port });
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
    const relay = openTcpRelay('::1', port, { ip: '127.0.0.1', port: target });
    relays.push(relay);
    const payloads = Array.from({ length: 64 }, () => randomBytes(256 << 10));
    const answers = await Promise.all(payloads.map((p) => exchange(port, p)));
    expect(answers).toEqual(payloads.map((p) => `${p.length} ${createHash('sha256').update(p).digest('hex')}`));
    // The relay thread closes a connection just after passing on the last FIN: give it that moment.
    for (let i = 0; i < 100 && relay.stats().active > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(relay.stats()).toEqual({ active: 0, accepted: 64 });
  });
});
