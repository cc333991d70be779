// What an rpc method is: its name, who may call it and its validators. Apart from rpc.ts so
// that method tables (src/rpc-methods.ts) load without the rpc runtime and its CBOR codec: the
// CLI's offline reads import those tables for their types and validators only.

/** In a method's `allow`: every peer, whatever role `RpcAccess.roleOf` gives it. */
export const ANYONE = 'anyone';

/** A method: its name, who may call it and validators for both directions (each throws BAD_MESSAGE). */
export interface RpcMethod<Req, Res> {
  readonly name: string;
  /**
   * The roles (as `RpcAccess.roleOf` names them) that may call it, or `ANYONE`. Deny by default:
   * a peer whose role is not listed is refused before its request is read, and a method with no
   * role listed cannot be registered at all.
   */
  readonly allow: readonly string[];
  readonly request: (value: unknown) => Req;
  readonly response: (value: unknown) => Res;
}

/** Whether `role` may call `method`. */
export function allows(method: RpcMethod<unknown, unknown>, role: string): boolean {
  return method.allow.includes(ANYONE) || method.allow.includes(role);
}
