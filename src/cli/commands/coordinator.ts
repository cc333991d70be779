// `flt coordinator`: runs until SIGINT or SIGTERM, then flushes and closes cleanly (exit 0).
// The role is imported when the command runs: `untilSignal` is shared with light commands.

import type { Invocation } from '../invocation.js';

export async function runCoordinator({ config, log, out }: Invocation): Promise<void> {
  // Listen first: a signal that arrives while starting still ends in a clean shutdown. (A
  // handler installed only after the endpoint is bound is, measured, sometimes not yet in
  // place for a signal sent right after the ticket is printed.)
  const stopped = untilSignal();
  (await import('../../memory-mode.js')).favourMemory();
  const { Coordinator } = await import('../../roles/coordinator.js');
  const coordinator = await Coordinator.start(config, log);
  const node = coordinator.node;
  log.info('coordinator ready', {
    node: node.key.nodeId,
    addrs: node.transport.boundSockets().join(','),
  });
  if (config.json) out.json({ nodeId: node.key.nodeId, ticket: coordinator.ticket });
  else out.line(coordinator.ticket);
  const signal = await stopped;
  log.info(`${signal}: shutting down`);
  await coordinator.close();
  log.info('coordinator stopped');
}

/** Resolves with the first SIGINT/SIGTERM; a second one while shutting down exits at once. */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const first = (signal: NodeJS.Signals) => {
      process.off('SIGINT', first).off('SIGTERM', first);
      process.once('SIGINT', () => process.exit(130)).once('SIGTERM', () => process.exit(143));
      resolve(signal);
    };
    process.on('SIGINT', first).on('SIGTERM', first);
  });
}
