// Where the tests run. In the Nix build sandbox (the package's passthru.tests sets FLT_SANDBOX=1)
// loopback works but there is no network, no npm cache and no real Nix store: tests that need
// those skip themselves there, saying why.

export const IN_NIX_SANDBOX = process.env.FLT_SANDBOX === '1';

/** Logs why a suite is skipped in the sandbox, and returns whether it is. */
export function skippedInSandbox(what: string, why: string): boolean {
  if (IN_NIX_SANDBOX) console.warn(`skipped in the Nix sandbox: ${what} (${why})`);
  return IN_NIX_SANDBOX;
}
