// What a call failed with, as the stable code tests assert on (never the message text).

import { FltError } from '../../sync/errors.js';

/** The FltError code `fn` throws, the text of anything else it throws, or 'no error'. */
export function thrownCode(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return err instanceof FltError ? err.code : String(err);
  }
  return 'no error';
}
