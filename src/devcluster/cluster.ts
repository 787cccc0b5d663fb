// Owns the local dev cluster library: real `conclave start` node processes on loopback, described by DIR/cluster.json
// ({"mode","swarm","nodes":[{org,pid,peerUrl,apiUrl,dataDir,orgDir,federationFile}]}), plus the helpers scripts and
// tests drive them with (kill, restart, HTTPS API client trusting each org's CA, bounded polling). Used by
// `conclave dev-cluster`, `conclave demo`, the chaos tool and the cluster tests.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, fetch, type RequestInit, type Response } from 'undici';
import { writeLocalFederation, type LocalFederation, type SwarmSpec } from '../config/local-federation.ts';

export type ClusterMode = 'raft' | 'pbft';

/** One node as DIR/cluster.json lists it. */
export interface ClusterNode {
  org: string;
  /** The node process (detached from whoever started it); may be dead after a kill. */
  pid: number;
  peerUrl: string;
  /** The public API, HTTPS with the org's node.crt: trust `<orgDir>/ca.crt`. */
  apiUrl: string;
  dataDir: string;
  /** The org's `conclave init` output: ca.crt, node.crt, agent.jwk, admin.jwk, member-card.yaml, ... */
  orgDir: string;
  /** The org's federation file, the one its node was started with. */
  federationFile: string;
}

/** The content of DIR/cluster.json. */
export interface ClusterInfo {
  mode: ClusterMode;
  swarm: string;
  nodes: ClusterNode[];
}

export interface UpClusterOptions {
  /** How many orgs (named acme, globex, initech, umbrella, ...) or their ids. */
  orgs: number | string[];
  mode: ClusterMode;
  /** Folder for everything (certs, federation files, data, logs, cluster.json); created, must be empty. */
  dir: string;
  /** Swarm id (default `reviews`). */
  swarm?: string;
  /** The swarm's policy (default: values approve / request-changes / reject, quorum majority, rule majority). */
  policy?: SwarmSpec['policy'];
  /** Milliseconds per Raft tick passed to `conclave start --tick-ms` (the node's default when absent). */
  tickMs?: number;
  /** Bound on waiting for every node's /readyz (default 120 s: the machine may be slow and loaded). */
  readyTimeoutMs?: number;
  /**
   * SIGKILL the nodes when this process exits (default true: a test or a demo must not leave nodes behind).
   * `conclave dev-cluster up` passes false: its nodes outlive it by design.
   */
  stopOnExit?: boolean;
  /** Progress lines (e.g. console.log); silent by default. */
  onProgress?: (line: string) => void;
}

/** Ids given to `orgs: N`: well-known fictional companies, then org-N. */
export const DEFAULT_ORG_NAMES = ['acme', 'globex', 'initech', 'umbrella', 'hooli', 'soylent', 'wonka', 'cyberdyne', 'tyrell'] as const;

export const DEFAULT_POLICY: SwarmSpec['policy'] = {
  values: ['approve', 'request-changes', 'reject'],
  quorum: 'majority',
  rule: 'majority',
};

/** The repository root (two folders above this file) and the `conclave` entry point the nodes run. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CONCLAVE_BIN = join(REPO_ROOT, 'bin', 'conclave.js');

const CLUSTER_FILE = 'cluster.json';
/** Launch options that restart needs but cluster.json does not carry (its shape is fixed by the issue). */
const LAUNCH_FILE = 'launch.json';

interface LaunchOptions {
  tickMs?: number;
}

// ---------------------------------------------------------------------------------------------------------------
// Polling

export interface WaitForOptions {
  /** Give up after this long (default 60 s). */
  timeoutMs?: number;
  /** What is awaited, for the error message: "every node ready". */
  what: string;
  /** Pause between probes (default 200 ms). */
  intervalMs?: number;
}

/** Thrown by a waitFor probe to give up at once (e.g. the process awaited has died): waitFor rethrows it. */
export class StopWaiting extends Error {
  override readonly name = 'StopWaiting';
}

/**
 * Polls `cond` until it returns a truthy value (returned) or the bound passes; then throws "timed out after N s
 * waiting for <what>" with the last error `cond` threw, if any. A throwing probe counts as "not yet", except
 * for StopWaiting, which is rethrown at once.
 */
export async function waitFor<T>(cond: () => T | Promise<T>, options: WaitForOptions): Promise<NonNullable<T>> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const intervalMs = options.intervalMs ?? 200;
  const started = Date.now();
  let last: string | null = null;
  for (;;) {
    try {
      const value = await cond();
      if (value) return value as NonNullable<T>;
      last = null;
    } catch (error) {
      if (error instanceof StopWaiting) throw error;
      last = (error as Error).message ?? String(error);
    }
    if (Date.now() - started >= timeoutMs) {
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      throw new Error(`timed out after ${seconds} s waiting for ${options.what}${last ? ` (last error: ${last})` : ''}`);
    }
    await new Promise((done) => setTimeout(done, intervalMs));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// cluster.json

export function readCluster(dir: string): ClusterInfo {
  const file = join(resolve(dir), CLUSTER_FILE);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new Error(`no dev cluster in ${dir}: ${file} does not exist (start one with \`conclave dev-cluster up --dir ${dir}\`)`);
  }
  const info = JSON.parse(text) as ClusterInfo;
  if (!info || !Array.isArray(info.nodes) || typeof info.swarm !== 'string') throw new Error(`${file} is not a cluster description`);
  return info;
}

function writeCluster(dir: string, info: ClusterInfo): void {
  const file = join(resolve(dir), CLUSTER_FILE);
  const temp = `${file}.${process.pid}.tmp`;
  writeFileSync(temp, JSON.stringify(info, null, 2) + '\n');
  renameSync(temp, file); // readers never see half a file
}

function readLaunch(dir: string): LaunchOptions {
  try {
    return JSON.parse(readFileSync(join(resolve(dir), LAUNCH_FILE), 'utf8')) as LaunchOptions;
  } catch {
    return {};
  }
}

/** Serializes read-modify-write of one cluster.json inside this process (chaos restarts nodes concurrently). */
const clusterLocks = new Map<string, Promise<unknown>>();
async function updateCluster<T>(dir: string, change: (info: ClusterInfo) => Promise<T> | T): Promise<T> {
  const key = resolve(dir);
  const previous = clusterLocks.get(key) ?? Promise.resolve();
  const run = previous.catch(() => undefined).then(async () => {
    const info = readCluster(dir);
    const result = await change(info);
    writeCluster(dir, info);
    return result;
  });
  clusterLocks.set(key, run);
  try {
    return await run;
  } finally {
    if (clusterLocks.get(key) === run) clusterLocks.delete(key);
  }
}

export function findNode(info: ClusterInfo, org: string): ClusterNode {
  const node = info.nodes.find((n) => n.org === org);
  if (!node) throw new Error(`no org ${JSON.stringify(org)} in this cluster (orgs: ${info.nodes.map((n) => n.org).join(', ')})`);
  return node;
}

export function logFile(dir: string, org: string): string {
  return join(resolve(dir), 'logs', `${org}.log`);
}

/** The last lines of a node's log, for error messages. */
export function logTail(dir: string, org: string, lines = 15): string {
  try {
    return readFileSync(logFile(dir, org), 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Processes

/** Children this process started and has not stopped yet: SIGKILLed when it exits (see stopOnExit). */
const tracked = new Map<number, string>();
let exitHookInstalled = false;

/** SIGKILLs (synchronously) every node this process started with stopOnExit and has not stopped. */
export function stopAll(): void {
  for (const [pid, federationFile] of tracked) {
    if (isNodeProcess(pid, federationFile)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  tracked.clear();
}

function track(pid: number, federationFile: string): void {
  tracked.set(pid, federationFile);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', stopAll);
  }
}

/**
 * Whether `pid` is alive and is the node started with `federationFile` (on Linux, by its command line, so a pid
 * reused by another program after the node died is never signalled). A zombie counts as dead.
 */
export function isNodeProcess(pid: number, federationFile: string): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  if (process.platform === 'linux') {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      if (state === 'Z' || state === 'X') return false;
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      return cmdline.includes(federationFile);
    } catch {
      return false;
    }
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function isNodeRunning(node: ClusterNode): boolean {
  return isNodeProcess(node.pid, node.federationFile);
}

/** Starts one node process, detached, its output appended to DIR/logs/<org>.log; returns its pid. */
function spawnNode(dir: string, node: Pick<ClusterNode, 'org' | 'federationFile'>, launch: LaunchOptions, stopOnExit: boolean): number {
  mkdirSync(join(resolve(dir), 'logs'), { recursive: true });
  const out = openSync(logFile(dir, node.org), 'a');
  try {
    const args = [CONCLAVE_BIN, 'start', '--config', node.federationFile];
    if (launch.tickMs !== undefined) args.push('--tick-ms', String(launch.tickMs));
    const child = spawn(process.execPath, args, { cwd: REPO_ROOT, detached: true, stdio: ['ignore', out, out], env: process.env });
    if (child.pid === undefined) throw new Error(`could not start the node of ${node.org} (${process.execPath} ${args.join(' ')})`);
    child.on('error', () => undefined);
    child.unref();
    if (stopOnExit) track(child.pid, node.federationFile);
    return child.pid;
  } finally {
    closeSync(out); // the child holds its own descriptor
  }
}

async function waitForExit(node: ClusterNode, timeoutMs: number): Promise<boolean> {
  try {
    await waitFor(() => !isNodeRunning(node), { timeoutMs, what: `${node.org}'s node (pid ${node.pid}) to exit`, intervalMs: 100 });
    return true;
  } catch {
    return false;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// HTTPS client

const agents = new Map<string, Agent>();

function agentFor(node: ClusterNode): Agent {
  const caFile = join(node.orgDir, 'ca.crt');
  let agent = agents.get(caFile);
  if (!agent) {
    agent = new Agent({ connect: { ca: readFileSync(caFile, 'utf8') }, allowH2: true, connectTimeout: 20_000 });
    agents.set(caFile, agent);
  }
  return agent;
}

export type ApiFetchInit = Omit<RequestInit, 'dispatcher'> & {
  /** Abort after this long (default 60 s) unless `signal` is given. */
  timeoutMs?: number;
};

/** fetch() against a node's public API over HTTPS, trusting exactly that org's CA (`<orgDir>/ca.crt`). */
export async function apiFetch(node: ClusterNode, path: string, init: ApiFetchInit = {}): Promise<Response> {
  const { timeoutMs, ...rest } = init;
  const url = new URL(path, node.apiUrl.endsWith('/') ? node.apiUrl : `${node.apiUrl}/`);
  return fetch(url, { ...rest, signal: rest.signal ?? AbortSignal.timeout(timeoutMs ?? 60_000), dispatcher: agentFor(node) });
}

/** GET and parse JSON; throws with the status and body on a non-2xx answer. */
export async function apiJson<T = any>(node: ClusterNode, path: string, init: ApiFetchInit = {}): Promise<T> {
  const response = await apiFetch(node, path, init);
  const text = await response.text();
  if (!response.ok) throw new Error(`${init.method ?? 'GET'} ${path} on ${node.org} answered ${response.status}: ${text.slice(0, 300)}`);
  return JSON.parse(text) as T;
}

/** Closes the HTTPS connections apiFetch keeps open (lets a CLI exit promptly). */
export async function closeClients(): Promise<void> {
  const all = [...agents.values()];
  agents.clear();
  await Promise.all(all.map((agent) => agent.close().catch(() => undefined)));
}

/**
 * Closes this process's connections to the given nodes. Done before a SIGTERM: the node's API server waits for
 * open HTTP/2 sessions when it closes, so a client holding one would stall the node's clean stop.
 */
async function closeClientsFor(nodes: ClusterNode[]): Promise<void> {
  const closing: Promise<void>[] = [];
  for (const node of nodes) {
    const caFile = join(node.orgDir, 'ca.crt');
    const agent = agents.get(caFile);
    if (!agent) continue;
    agents.delete(caFile);
    closing.push(agent.close().catch(() => undefined));
  }
  await Promise.race([Promise.all(closing), new Promise((done) => setTimeout(done, 5_000).unref())]);
}

async function answers(node: ClusterNode, path: string): Promise<boolean> {
  try {
    const response = await apiFetch(node, path, { timeoutMs: 10_000 });
    await response.arrayBuffer();
    return response.status === 200;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Cluster lifecycle

function orgIds(orgs: number | string[]): string[] {
  if (Array.isArray(orgs)) return orgs;
  if (!Number.isInteger(orgs) || orgs < 1) throw new Error(`orgs must be a positive whole number, got ${orgs}`);
  return Array.from({ length: orgs }, (_, i) => DEFAULT_ORG_NAMES[i] ?? `org-${i + 1}`);
}

/**
 * Writes a local federation into `dir` (one `conclave init` per org, one federation file per org on free loopback
 * ports), starts one `conclave start` process per org, writes DIR/cluster.json, and waits until every node's
 * /readyz answers 200 (for raft: every node knows a leader). If anything fails the nodes started are stopped.
 */
/** The cluster.json description of a freshly written local federation (no process started yet: pids are 0). */
export function clusterInfoOf(mode: ClusterMode, swarm: string, federation: LocalFederation): ClusterInfo {
  return {
    mode,
    swarm,
    nodes: federation.orgs.map((org) => ({
      org: org.org,
      pid: 0,
      peerUrl: org.peerUrl,
      apiUrl: org.apiUrl,
      dataDir: org.dataDir,
      orgDir: org.certDir,
      federationFile: org.configPath,
    })),
  };
}

export async function upCluster(options: UpClusterOptions): Promise<ClusterInfo> {
  const dir = resolve(options.dir);
  const orgs = orgIds(options.orgs);
  const swarm = options.swarm ?? 'reviews';
  const progress = options.onProgress ?? (() => undefined);
  const stopOnExit = options.stopOnExit ?? true;
  if (options.mode !== 'raft' && options.mode !== 'pbft') throw new Error(`mode must be raft or pbft, got ${String(options.mode)}`);
  if (options.mode === 'pbft' && orgs.length < 4) throw new Error(`pbft needs at least 4 orgs (n = 3f+1), got ${orgs.length}`);
  if (existsSync(dir) && readdirSync(dir).length > 0) {
    const hint = existsSync(join(dir, CLUSTER_FILE)) ? ` (it holds a cluster: \`conclave dev-cluster down --dir ${options.dir}\`, then remove it)` : '';
    throw new Error(`${options.dir} is not empty${hint}: give a new or empty folder`);
  }
  mkdirSync(dir, { recursive: true });

  progress(`writing keys, certificates and federation files for ${orgs.join(', ')}`);
  const federation = await writeLocalFederation({
    dir,
    orgs,
    swarm: { id: swarm, mode: options.mode, policy: options.policy ?? DEFAULT_POLICY },
  });
  const launch: LaunchOptions = options.tickMs === undefined ? {} : { tickMs: options.tickMs };
  writeFileSync(join(dir, LAUNCH_FILE), JSON.stringify(launch) + '\n');

  const info = clusterInfoOf(options.mode, swarm, federation);
  progress(`starting ${info.nodes.length} node processes (logs in ${join(dir, 'logs')})`);
  try {
    for (const node of info.nodes) node.pid = spawnNode(dir, node, launch, stopOnExit);
    writeCluster(dir, info);
    const readyTimeoutMs = options.readyTimeoutMs ?? 120_000;
    await Promise.all(info.nodes.map((node) => waitUntilAnswers(dir, node, '/readyz', readyTimeoutMs)));
  } catch (error) {
    await stopNodes(dir, info.nodes.filter((n) => n.pid > 0), 10_000);
    throw error;
  }
  return info;
}

/** Waits until `path` answers 200 on the node; fails at once (with its log tail) if the process died. */
async function waitUntilAnswers(dir: string, node: ClusterNode, path: string, timeoutMs: number): Promise<void> {
  await waitFor(
    async () => {
      if (!isNodeRunning(node)) {
        throw new StopWaiting(`the node of ${node.org} (pid ${node.pid}) exited; last lines of ${logFile(dir, node.org)}:\n${logTail(dir, node.org)}`);
      }
      return answers(node, path);
    },
    { timeoutMs, what: `${node.org}'s ${path} to answer 200 at ${node.apiUrl}`, intervalMs: 250 },
  );
}

async function stopNodes(dir: string, nodes: ClusterNode[], timeoutMs: number): Promise<string[]> {
  const killed: string[] = [];
  const running = nodes.filter(isNodeRunning);
  await closeClientsFor(running);
  for (const node of running) {
    signal(node.pid, 'SIGCONT'); // a paused (SIGSTOP) node cannot act on SIGTERM
    signal(node.pid, 'SIGTERM');
  }
  await Promise.all(
    running.map(async (node) => {
      if (await waitForExit(node, timeoutMs)) return;
      signal(node.pid, 'SIGKILL');
      killed.push(node.org);
      if (!(await waitForExit(node, 30_000))) throw new Error(`${node.org}'s node (pid ${node.pid}) survived SIGKILL; see ${logFile(dir, node.org)}`);
    }),
  );
  for (const node of nodes) tracked.delete(node.pid);
  return killed;
}

/**
 * Stops every node of the cluster: SIGTERM (after SIGCONT, in case one is paused), waits up to `timeoutMs`
 * (default 30 s) for a clean exit, then SIGKILLs the rest. Returns the orgs that needed SIGKILL.
 */
export async function downCluster(dir: string, options: { timeoutMs?: number } = {}): Promise<{ killed: string[] }> {
  const info = readCluster(dir);
  const killed = await stopNodes(dir, info.nodes, options.timeoutMs ?? 30_000);
  return { killed };
}

/** Sends a signal to one node (default SIGKILL, then waits until it is gone). SIGSTOP / SIGCONT pause and resume. */
export async function killNode(dir: string, org: string, sig: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  const node = findNode(readCluster(dir), org);
  if (!isNodeRunning(node)) {
    if (sig === 'SIGKILL' || sig === 'SIGTERM') return;
    throw new Error(`${org}'s node (pid ${node.pid}) is not running`);
  }
  if (sig === 'SIGTERM') await closeClientsFor([node]);
  signal(node.pid, sig);
  if (sig === 'SIGKILL' || sig === 'SIGTERM') {
    if (sig === 'SIGTERM') signal(node.pid, 'SIGCONT');
    if (!(await waitForExit(node, sig === 'SIGKILL' ? 30_000 : 60_000))) throw new Error(`${org}'s node (pid ${node.pid}) did not exit after ${sig}`);
    tracked.delete(node.pid);
  }
}

export interface RestartOptions {
  /** Bound on waiting for /healthz (default 120 s). */
  timeoutMs?: number;
  /** As for upCluster (default true). */
  stopOnExit?: boolean;
  /** Also wait for /readyz (the node knows a leader again). */
  waitReady?: boolean;
}

/**
 * Starts one org's node again (it must not be running: kill it first), with the same federation file and data,
 * records the new pid in cluster.json and waits until its /healthz answers. Returns the updated node.
 */
export async function restartNode(dir: string, org: string, options: RestartOptions = {}): Promise<ClusterNode> {
  const launch = readLaunch(dir);
  const node = await updateCluster(dir, (info) => {
    const found = findNode(info, org);
    if (isNodeRunning(found)) throw new Error(`${org}'s node is still running (pid ${found.pid}): kill it first`);
    found.pid = spawnNode(dir, found, launch, options.stopOnExit ?? true);
    return { ...found };
  });
  const timeoutMs = options.timeoutMs ?? 120_000;
  await waitUntilAnswers(dir, node, '/healthz', timeoutMs);
  if (options.waitReady) await waitUntilAnswers(dir, node, '/readyz', timeoutMs);
  return node;
}

export interface NodeStatus {
  org: string;
  pid: number;
  running: boolean;
  apiUrl: string;
  /** GET /v1/status, or null when the API did not answer. */
  status: any;
  error: string | null;
}

/** Every node's process state and its /v1/status answer (null when unreachable). */
export async function clusterStatus(dir: string): Promise<NodeStatus[]> {
  const info = readCluster(dir);
  return Promise.all(
    info.nodes.map(async (node) => {
      const running = isNodeRunning(node);
      if (!running) return { org: node.org, pid: node.pid, running, apiUrl: node.apiUrl, status: null, error: 'not running' };
      try {
        return { org: node.org, pid: node.pid, running, apiUrl: node.apiUrl, status: await apiJson(node, '/v1/status', { timeoutMs: 10_000 }), error: null };
      } catch (error) {
        return { org: node.org, pid: node.pid, running, apiUrl: node.apiUrl, status: null, error: (error as Error).message };
      }
    }),
  );
}

/** The leader's org as a majority of reachable nodes report it for the cluster's swarm, or null. */
export async function currentLeader(dir: string): Promise<string | null> {
  const info = readCluster(dir);
  const statuses = await clusterStatus(dir);
  const counts = new Map<string, number>();
  for (const s of statuses) {
    const swarm = (s.status?.swarms as { swarm: string; leader: string | null }[] | undefined)?.find((w) => w.swarm === info.swarm);
    if (swarm?.leader) counts.set(swarm.leader, (counts.get(swarm.leader) ?? 0) + 1);
  }
  for (const [org, count] of counts) if (count > info.nodes.length / 2) return org;
  return null;
}
