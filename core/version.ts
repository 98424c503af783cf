// The package version, read once from package.json (the CLI's --version, the API's health).

import { readFileSync } from 'node:fs';

export const TSNET_VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
