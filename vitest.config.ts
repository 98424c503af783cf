import { defineConfig } from 'vitest/config';

const common = {
  // Kernel and e2e tests spend their time waiting on the kernel and on dockerd, not on CPU.
  pool: 'forks' as const,
  testTimeout: 60_000,
  hookTimeout: 180_000,
};

export default defineConfig({
  test: {
    projects: [
      { test: { ...common, name: 'unit', include: ['test/unit/**/*.test.ts'] } },
      { test: { ...common, name: 'kernel', include: ['test/kernel/**/*.test.ts', 'test/store/**/*.test.ts', 'test/cni/**/*.test.ts'] } },
      // e2e files share one dockerd, the plugin socket directory and the host's iptables: one file at a time.
      { test: { ...common, name: 'e2e', include: ['test/e2e/**/*.test.ts'], fileParallelism: false } },
    ],
    maxWorkers: 2,
  },
});
