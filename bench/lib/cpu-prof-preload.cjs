// Preloaded into tranproxy's processes by the benchmark (NODE_OPTIONS=--require …) when it
// profiles the data plane: `node --cpu-prof` is not allowed in NODE_OPTIONS, and the data-plane
// child is forked with its own argv. The first SIGUSR2 starts the V8 CPU profiler, the next
// one stops it and writes BENCH_CPU_PROF_DIR/PID.cpuprofile (so start-up is left out).
// Nothing happens without BENCH_CPU_PROF_DIR.
'use strict';
const dir = process.env.BENCH_CPU_PROF_DIR;
if (dir) {
  const inspector = require('node:inspector');
  const fs = require('node:fs');
  const path = require('node:path');
  const session = new inspector.Session();
  session.connect();
  session.post('Profiler.enable', () => session.post('Profiler.setSamplingInterval', { interval: 500 }));
  let running = false;
  process.on('SIGUSR2', () => {
    if (!running) {
      running = true;
      session.post('Profiler.start');
      return;
    }
    running = false;
    session.post('Profiler.stop', (err, res) => {
      if (err) return;
      const file = path.join(dir, `${process.pid}.cpuprofile`);
      fs.writeFileSync(`${file}.tmp`, JSON.stringify(res.profile));
      fs.renameSync(`${file}.tmp`, file);
    });
  });
}
