// The federation file's typed shape after loading and validation (config/load.ts produces it).
import type { PublicJwk } from '../crypto/ed25519.ts';

export type ConsensusMode = 'raft' | 'pbft';

/** How many orgs must have spoken before a decision can be reached. */
export type QuorumSpec = 'majority' | 'all' | number;

/** How the spoken verdicts become a decision. */
export type DecisionRule =
  | { kind: 'majority' } // strictly more than half of the votes cast share one value
  | { kind: 'unanimity' } // every vote cast has the same value
  | { kind: 'threshold'; value: string; count: number }; // at least `count` orgs voted `value`

export interface SwarmPolicy {
  values: string[];
  quorum: QuorumSpec;
  rule: DecisionRule;
  /** Value decided when the quorum has spoken but the rule cannot be met any more (e.g. unanimity broken). */
  fallback: string | null;
  /** An agent's `iat` may be at most this far from the node's clock when first received. */
  maxClockSkewSeconds: number;
}

/** Admin approvals needed for a federation change: a majority of the swarm's orgs by default. */
export type AdminPolicy = 'majority' | 'all' | 'two-thirds' | number;

export interface SwarmConfig {
  id: string;
  members: string[];
  mode: ConsensusMode;
  policy: SwarmPolicy;
  adminPolicy: AdminPolicy;
}

/**
 * A swarm's rules: its decision policy and admin policy. The file states them; the log commits them (genesis, then
 * approved set-policy changes), and the committed ones are what every replica and the auditor apply — read from each
 * node's file instead, two files that disagree (one edited, that node restarted) would decide a subject differently.
 */
export type SwarmRules = Pick<SwarmConfig, 'policy' | 'adminPolicy'>;

export interface MemberConfig {
  org: string;
  /** https URL of the member node's peer port (mutual TLS, HTTP/2). */
  peerUrl: string;
  /** https URL of the member node's public API, when it publishes one. */
  apiUrl: string | null;
  /** PEM of the org's CA certificate(s); more than one during a CA rotation overlap. */
  caPem: string;
  nodeKeys: PublicJwk[];
  agentKeys: PublicJwk[];
  adminKeys: PublicJwk[];
}

export interface NodeSelfConfig {
  org: string;
  /** The node's name as its TLS certificate's SAN states it (`conclave://org/<org>/node/<name>`). */
  name?: string;
  peerListen: { host: string; port: number };
  apiListen: { host: string; port: number };
  dataDir: string;
  /** Paths, resolved against the federation file's folder. */
  tlsCertFile: string;
  tlsKeyFile: string;
  caFile: string;
  signingKeyFile: string;
}

export interface FederationConfig {
  version: 1;
  federation: string;
  /** Absolute path of the file this was loaded from (relative paths in it are resolved against its folder). */
  sourcePath: string;
  node: NodeSelfConfig;
  members: MemberConfig[];
  swarms: SwarmConfig[];
}
