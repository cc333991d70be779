// The fleet's RPC methods (flt/rpc/0). sync/rpc.ts carries them; this file names them and
// validates their bodies in both directions. Enrollment and updates join this list later.

import { FltError } from '../sync/errors.js';
import { isRecord } from '../sync/codec.js';
import { isNodeId, type NodeId } from '../sync/ids.js';
import type { RpcMethod } from '../sync/rpc.js';

export interface NodeInfo {
  readonly nodeId: NodeId;
  readonly role: string;
  readonly version: string;
  readonly uptimeMs: number;
}

function bad(what: string): never {
  throw new FltError('BAD_MESSAGE', what);
}

/** `node.info`: who is this node, which role and version it runs. Any node answers it. */
export const nodeInfo: RpcMethod<Record<string, never>, NodeInfo> = {
  name: 'node.info',
  request: (v) => {
    if (!isRecord(v) || Object.keys(v).length > 0) bad('node.info takes an empty map');
    return {};
  },
  response: (v) => {
    if (
      !isRecord(v) ||
      !isNodeId(v.nodeId) ||
      typeof v.role !== 'string' ||
      typeof v.version !== 'string'
    ) {
      bad('node.info: bad answer');
    }
    if (typeof v.uptimeMs !== 'number' || !(v.uptimeMs >= 0)) bad('node.info: bad uptime');
    return { nodeId: v.nodeId, role: v.role, version: v.version, uptimeMs: v.uptimeMs };
  },
};
