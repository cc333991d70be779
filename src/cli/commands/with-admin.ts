// Every `flt admin` runner's session: open the admin (offline when the command has --offline and
// it was given), run, close. The role is imported here, when a command runs (cli-start test).

import type { Admin } from '../../roles/admin.js';
import type { Invocation } from '../invocation.js';

export async function withAdmin<T>(inv: Invocation, fn: (a: Admin) => Promise<T>): Promise<T> {
  const { Admin } = await import('../../roles/admin.js');
  const admin = await Admin.open(inv.config, inv.log, inv.opts.offline === true);
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
