// Stand-ins for the services a test does not exercise.

/** A logger that drops everything (tests assert outcomes, not log lines). */
export const silentLog = { debug() {}, info() {}, warn() {}, error() {} };

/** A firewall that renders nothing: for tests that must not touch the host's iptables. */
export const noFirewall = { name: 'none', apply: async () => undefined, drift: async () => [], removeAll: async () => undefined };
