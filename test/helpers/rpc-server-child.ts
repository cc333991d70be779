// A child process serving one rpc method, `test.inc` (n -> n + 1), on an iroh endpoint, so that a
// test can SIGKILL it and start it again on the same address and key: what a coordinator crash
// looks like to an agent's open connections (test/rpc-channel.test.ts).
//
//   node dist/test/helpers/rpc-server-child.js SECRET_HEX HOST:PORT [BLOCK_MS]
// Prints `{"addr": PeerAddr}` once serving and `{"conn": n}` for each connection accepted. With
// BLOCK_MS, its event loop is then blocked that long: it accepts no connection meanwhile (a
// coordinator too busy to accept, seen from its agents).

import { ALPN } from '../../sync/protocols.js';
import { Router } from '../../sync/router.js';
import { RpcServer } from '../../sync/rpc.js';
import { IrohTransport } from '../../sync/iroh-transport.js';
import { inc } from './rpc-methods.js';

const [secretHex = '', bind = '127.0.0.1:0', blockMs = '0'] = process.argv.slice(2);
const transport = await IrohTransport.bind({
  secretKey: Buffer.from(secretHex, 'hex'),
  alpns: [ALPN.rpc],
  bind,
  relay: 'disabled',
  discovery: 'none',
});
const rpc = new RpcServer().register(inc, (req) => Promise.resolve({ n: req.n + 1 }));
let conns = 0;
new Router(transport)
  .route(ALPN.rpc, (c) => {
    process.stdout.write(JSON.stringify({ conn: ++conns }) + '\n');
    return rpc.serve(c);
  })
  .start();
process.stdout.write(JSON.stringify({ addr: transport.addr() }) + '\n');
if (Number(blockMs) > 0)
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number(blockMs));
