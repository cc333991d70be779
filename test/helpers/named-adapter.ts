// Lets automerge-repo's own network acceptance suite drive flt's SyncAdapter. The suite builds
// its Repos with fixed peer ids ("alice", "left", "a"...), but flt authenticates every peer by
// its node id and refuses any other peer id (BAD_ARGUMENT). This wrapper only renames: the
// name a Repo gives in connect() stands for the node id of that adapter's transport, in every
// event and message in both directions. All behaviour under test is SyncAdapter's.

import {
  NetworkAdapter,
  type Message,
  type PeerId,
  type PeerMetadata,
} from '@automerge/automerge-repo';
import type { NodeId } from '../../sync/ids.js';
import type { SyncAdapter } from '../../sync/sync-adapter.js';

/** The name <-> node id table that the adapters of one test share. */
export class PeerNames {
  private readonly nodeOf = new Map<string, NodeId>();
  private readonly nameOf = new Map<NodeId, PeerId>();

  bind(name: PeerId, node: NodeId): void {
    const old = this.nameOf.get(node);
    if (old !== undefined) this.nodeOf.delete(old);
    this.nodeOf.set(name, node);
    this.nameOf.set(node, name);
  }

  /** The node id a name stands for; an unknown name is passed on unchanged. */
  node(name: PeerId): PeerId {
    return (this.nodeOf.get(name) ?? name) as string as PeerId;
  }

  name(peer: PeerId): PeerId {
    return this.nameOf.get(peer as string as NodeId) ?? peer;
  }
}

export class NamedAdapter extends NetworkAdapter {
  constructor(
    readonly inner: SyncAdapter,
    /** The node id of `inner`'s transport. */
    private readonly node: NodeId,
    private readonly names: PeerNames,
  ) {
    super();
    inner.on('peer-candidate', ({ peerId, peerMetadata }) =>
      this.emit('peer-candidate', { peerId: names.name(peerId), peerMetadata }),
    );
    inner.on('peer-disconnected', ({ peerId }) =>
      this.emit('peer-disconnected', { peerId: names.name(peerId) }),
    );
    inner.on('message', (m) =>
      this.emit(
        'message',
        this.rename(m, (p) => names.name(p)),
      ),
    );
    inner.on('close', () => this.emit('close'));
  }

  isReady(): boolean {
    return this.inner.isReady();
  }

  whenReady(): Promise<void> {
    return this.inner.whenReady();
  }

  connect(peerId: PeerId, peerMetadata?: PeerMetadata): void {
    this.peerId = peerId;
    this.names.bind(peerId, this.node);
    this.inner.connect(this.node as string as PeerId, peerMetadata);
  }

  send(message: Message): void {
    this.inner.send(this.rename(message, (p) => this.names.node(p)));
  }

  disconnect(): void {
    this.inner.disconnect();
  }

  private rename(m: Message, to: (p: PeerId) => PeerId): Message {
    return { ...m, senderId: to(m.senderId), targetId: to(m.targetId) };
  }
}
