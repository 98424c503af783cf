// The Docker Engine API reads tsnet makes (GET over the unix socket, API 1.41): container names
// for the resolver, and what Docker still holds for the sweep of what it forgot.

import { request } from 'node:http';

export const DEFAULT_DOCKER_SOCKET = '/var/run/docker.sock';

export interface DockerNetwork {
  Id: string;
  Name: string;
  IPAM?: { Driver?: string; Config?: Array<{ Subnet?: string }> | null };
  /** Endpoints joined to containers (network inspect only; the list leaves it empty). */
  Containers?: Record<string, { Name: string; EndpointID: string }>;
}

export interface DockerContainer {
  Id: string;
  Name: string;
  Config?: { Hostname?: string };
  NetworkSettings?: { Networks?: Record<string, { NetworkID?: string; EndpointID?: string; Aliases?: string[] | null }> };
}

/** One GET; anything but a 200 with JSON is an error naming the path. */
export function dockerGet<T>(socketPath: string, path: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: `/v1.41${path}`, method: 'GET', timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`docker GET ${path}: ${res.statusCode} ${body.slice(0, 200)}`));
        try {
          resolve(JSON.parse(body) as T);
        } catch (e) {
          reject(e as Error);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`docker GET ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}
