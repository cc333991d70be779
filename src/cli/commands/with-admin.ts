// Every `flt admin` runner's session: open the admin (offline when the command has --offline and
// it was given), run, close. The role is imported here, when a command runs (cli-start test).
// `reads`: the command only reads the fleet table or facts (AdminOptions.reads): online, it runs
// without a Repo, and again with one if the coordinator cannot serve it that way (NeedsRepo).

import type { Admin, AdminOptions } from '../../roles/admin.js';
import type { Invocation } from '../invocation.js';

export async function withAdmin<T>(
  inv: Invocation,
  fn: (a: Admin) => Promise<T>,
  options: AdminOptions = {},
): Promise<T> {
  const { Admin, NeedsRepo } = await import('../../roles/admin.js');
  const offline = inv.opts.offline === true;
  if (options.reads === true && !offline) {
    try {
      return await session(await Admin.open(inv.config, inv.log, false, options), fn);
    } catch (err) {
      if (!(err instanceof NeedsRepo)) throw err;
      inv.log.debug(`reading through the Repo: ${err.message}`);
    }
  }
  return session(await Admin.open(inv.config, inv.log, offline), fn);
}

async function session<T>(admin: Admin, fn: (a: Admin) => Promise<T>): Promise<T> {
  let result: T;
  try {
    result = await fn(admin);
  } catch (err) {
    await admin.close().catch(() => undefined); // the first error is the one to report
    throw err;
  }
  await admin.close();
  return result;
}
