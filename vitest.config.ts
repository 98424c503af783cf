import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Kernel and e2e tests spend their time waiting on the kernel and on dockerd, not on CPU.
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 180_000,
    // e2e files share one dockerd and its iptables: they run one file at a time.
    fileParallelism: true,
    maxWorkers: 2,
  },
});
