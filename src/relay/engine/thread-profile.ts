// An optional V8 CPU profile of one engine thread, for finding where an inspected flow's time
// goes: the benchmark's --profile covers a process's main thread only, and this thread never
// returns to its event loop. A same-thread inspector session answers synchronously.
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

interface Session {
  connect(): void;
  post(method: string, params?: object, cb?: (err: Error | null, res: { profile: unknown }) => void): void;
}

/**
 * With TRANPROXY_ENGINE_CPU_PROF=DIR set, starts the profiler on the calling thread and
 * returns the function that stops it and writes DIR/engine-PID-INDEX.cpuprofile.
 */
export function startThreadProfile(index: number): (() => void) | undefined {
  const dir = process.env.TRANPROXY_ENGINE_CPU_PROF;
  if (!dir) return undefined;
  const inspector = createRequire(import.meta.url)('node:inspector') as { Session: new () => Session };
  const session = new inspector.Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 200 });
  session.post('Profiler.start');
  return () =>
    session.post('Profiler.stop', {}, (err, res) => {
      if (!err) writeFileSync(join(dir, `engine-${process.pid}-${index}.cpuprofile`), JSON.stringify(res.profile));
    });
}
