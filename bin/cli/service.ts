// The systemd unit: `tsnet serve` started before Docker (dockerd asks the plugin sockets for the
// networks it restores at start, and gives up on a driver that is not there), restarted on failure.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export function systemdUnit(nodePath: string, entry: string, serveArgs: string[]): string {
  const quote = (a: string): string => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `"${a.replace(/(["\\])/g, '\\$1')}"`);
  return `[Unit]
Description=tsnet container networking (Docker network/IPAM plugin, CNI daemon)
Documentation=https://github.com/tsnet
After=network-online.target
Wants=network-online.target
Before=docker.service containerd.service

[Service]
Type=simple
ExecStart=${[nodePath, entry, 'serve', ...serveArgs].map(quote).join(' ')}
Restart=on-failure
RestartSec=1
# Networks and containers keep working while the daemon restarts: stop only the daemon.
KillMode=process
TimeoutStopSec=30
LimitNOFILE=1048576

[Install]
WantedBy=multi-user.target
`;
}

export interface InstallResult {
  path: string;
  enabled: boolean;
  note?: string;
}

/** Writes the unit (atomically) and, when systemd runs here, enables and starts it. */
export function installService(unitDir: string, serveArgs: string[], entry: string, start: boolean): InstallResult {
  mkdirSync(unitDir, { recursive: true });
  const path = join(unitDir, 'tsnet.service');
  writeFileSync(`${path}.tmp`, systemdUnit(process.execPath, resolve(entry), serveArgs), { mode: 0o644 });
  renameSync(`${path}.tmp`, path);
  if (!start) return { path, enabled: false, note: 'written only (--no-start)' };
  if (!existsSync('/run/systemd/system')) return { path, enabled: false, note: 'systemd is not running here: start "tsnet serve" another way' };
  for (const args of [['daemon-reload'], ['enable', '--now', 'tsnet.service']]) {
    const r = spawnSync('systemctl', args, { encoding: 'utf8' });
    if (r.status !== 0) return { path, enabled: false, note: `systemctl ${args.join(' ')} failed: ${(r.stderr || r.stdout).trim()}` };
  }
  return { path, enabled: true };
}
