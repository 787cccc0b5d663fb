// This node's own secrets, read from the files a validated federation file names: TLS cert + key and the Ed25519
// signing key. What `conclave start` hands to the peer server, the client pool and the consensus signer.
import { readFileSync } from 'node:fs';
import type { FederationConfig } from '../config/types.ts';
import { importPrivateJwk, type PrivateJwk, type SigningKey } from '../crypto/ed25519.ts';
import { buildPeerTrust, peerIdentity } from './identity.ts';

export interface NodeCredentials {
  org: string;
  /** The node name from the certificate SAN. */
  node: string;
  certPem: string;
  keyPem: string;
  signingKey: SigningKey;
}

/** Reads the node's credentials; throws if the certificate would not identify this node to its peers. */
export function loadNodeCredentials(config: FederationConfig): NodeCredentials {
  const certPem = readFileSync(config.node.tlsCertFile, 'utf8');
  const keyPem = readFileSync(config.node.tlsKeyFile, 'utf8');
  const signingKey = importPrivateJwk(JSON.parse(readFileSync(config.node.signingKeyFile, 'utf8')) as PrivateJwk);
  const identity = peerIdentity(certPem, buildPeerTrust(config.members));
  if (identity.org !== config.node.org) throw new Error(`node.tls.cert identifies org ${identity.org}, not ${config.node.org}`);
  return { org: identity.org, node: identity.node, certPem, keyPem, signingKey };
}
