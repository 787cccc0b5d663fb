// Owns CPU profiling of node processes for the benchmark (`--cpu-prof` is not allowed in NODE_OPTIONS, `--import`
// is): loaded with NODE_OPTIONS="--import <this file>" and CONCLAVE_CPU_PROF_DIR set. SIGUSR2 starts the V8
// profiler, the next SIGUSR2 stops it and writes <dir>/<pid>-<n>.cpuprofile, so the profile covers exactly the
// window the benchmark chose.
import { Session } from 'node:inspector';
import process from 'node:process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.env.CONCLAVE_CPU_PROF_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  let running = false;
  let n = 0;
  process.on('SIGUSR2', () => {
    if (!running) {
      running = true;
      session.post('Profiler.enable', () => session.post('Profiler.setSamplingInterval', { interval: 500 }, () => session.post('Profiler.start')));
      return;
    }
    running = false;
    session.post('Profiler.stop', (error, result) => {
      if (!error && result) writeFileSync(join(dir, `${process.pid}-${++n}.cpuprofile`), JSON.stringify(result.profile));
    });
  });
}
