// Owns `npm run bench` (entry point). Makes a consistent source snapshot to benchmark, then runs
// bench/orchestrate.ts inside it. Other engineers edit the shared working tree while benchmarks run, so by default
// the nodes, load generator and micro-benchmarks run from `git archive HEAD` (plus this working tree's bench/ and,
// while it is not committed yet, src/devcluster/) with node_modules linked; `--tree working` runs in place and
// `--tree <rev>` (a commit, tag or branch) benchmarks that revision instead of HEAD.
// Results go to the working tree's bench/out/ unless --out says otherwise. Only node: imports here, on purpose:
// a half-edited file elsewhere in the tree cannot break the launcher.
import { spawn, execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const treeAt = argv.indexOf('--tree');
const tree = treeAt >= 0 ? argv[treeAt + 1] : argv.find((a) => a.startsWith('--tree='))?.slice(7) ?? 'head';
const outAt = argv.indexOf('--out');
const passOn = [...argv];
if (outAt < 0 && !argv.some((a) => a.startsWith('--out='))) passOn.push('--out', join(repo, 'bench', 'out'));
else if (outAt >= 0 && argv[outAt + 1]) passOn[outAt + 1] = resolve(argv[outAt + 1]!);

let root = repo;
let snapshot: string | null = null;
let commit: string | null = null;
try {
  const rev = tree === 'head' || tree === 'working' ? 'HEAD' : tree;
  commit = execFileSync('git', ['-C', repo, 'rev-parse', '--short', `${rev}^{commit}`], { encoding: 'utf8' }).trim();
} catch {
  commit = null;
}
if (tree !== 'working') {
  snapshot = mkdtempSync(join(tmpdir(), 'conclave-bench-tree-'));
  if (!commit) throw new Error(`--tree ${tree}: not a revision of ${repo}`);
  execFileSync('sh', ['-c', `git -C "${repo}" archive ${commit} | tar -x -C "${snapshot}"`]);
  cpSync(join(repo, 'bench'), join(snapshot, 'bench'), { recursive: true, filter: (src) => !src.startsWith(join(repo, 'bench', 'out')) });
  if (!existsSync(join(snapshot, 'src', 'devcluster', 'cluster.ts')) && existsSync(join(repo, 'src', 'devcluster', 'cluster.ts'))) {
    cpSync(join(repo, 'src', 'devcluster'), join(snapshot, 'src', 'devcluster'), { recursive: true });
  }
  symlinkSync(join(repo, 'node_modules'), join(snapshot, 'node_modules'), 'dir');
  root = snapshot;
}

const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'bench', 'orchestrate.ts'), ...passOn], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, CONCLAVE_BENCH_TREE: tree === 'working' ? 'working' : tree === 'head' ? 'head' : `rev ${tree}`, ...(commit ? { CONCLAVE_BENCH_COMMIT: commit } : {}) },
});
const forward = (sig: NodeJS.Signals) => child.kill(sig);
process.on('SIGINT', forward);
process.on('SIGTERM', forward);
child.on('exit', (code, signal) => {
  if (snapshot) rmSync(snapshot, { recursive: true, force: true });
  process.exit(code ?? (signal ? 1 : 0));
});
