// How the CLI prints: aligned tables for people, JSON for scripts, and exit codes that mean
// something (documented in the README).

export const EXIT = {
  OK: 0,
  /** The operation failed, or doctor found a problem. */
  FAILED: 1,
  /** Bad usage: unknown command or option, missing argument. */
  USAGE: 2,
  /** The network, endpoint or name asked for does not exist. */
  NOT_FOUND: 3,
} as const;

export class CliError extends Error {
  constructor(message: string, readonly exitCode: number = EXIT.FAILED) {
    super(message);
  }
}

type Cell = string | number | boolean | string[] | undefined;

/** Columns: [header, value of a row]. Lists are joined with commas; empty cells show '-'. */
export function table<T>(rows: readonly T[], columns: ReadonlyArray<readonly [string, (r: T) => Cell]>): string {
  const text = (c: Cell): string => (Array.isArray(c) ? c.join(',') : c === undefined || c === '' ? '-' : String(c)) || '-';
  const cells = rows.map((r) => columns.map(([, f]) => text(f(r))));
  const width = columns.map(([h], i) => Math.max(h.length, ...cells.map((row) => row[i]!.length)));
  const line = (vals: string[]): string => vals.map((v, i) => v.padEnd(width[i]!)).join('  ').trimEnd();
  return [line(columns.map(([h]) => h)), ...cells.map(line)].join('\n');
}

export function print(json: boolean, data: unknown, human: () => string): void {
  console.log(json ? JSON.stringify(data, null, 2) : human());
}

export const short = (id: string): string => id.slice(0, 12);
