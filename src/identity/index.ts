// The identity subsystem: node keys (files, OpenSSH format) and the keys derived from them.
// Other folders import from here, not from the modules inside.

export {
  type NodeKey,
  NODE_KEY_FILE,
  generateNodeKey,
  loadOrCreateNodeKey,
  loadPublicKeyFile,
  loadSecretKeyFile,
  nodeKeyFromSeed,
  writeKeyPair,
} from './node-key.js';
export {
  type OpenSshPrivateKey,
  ed25519PublicKey,
  encodeOpenSshPrivateKey,
  formatOpenSshPublicKey,
  parseOpenSshPrivateKey,
  parseOpenSshPublicKey,
} from './openssh.js';
export {
  type DerivePurpose,
  type KeyPair,
  DERIVE_PURPOSES,
  deriveKeyPair,
  deriveKeyPairFor,
  deriveSeed,
  deriveSeedFor,
} from './derive.js';
