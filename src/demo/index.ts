// `tranproxy demo` from start to exit status: as non-root, re-execute in a user namespace;
// as root, run the tour, print the report, remove the lab (also on Ctrl-C: exit 130).
import type { Lab } from '../netlab/lab.js';
import { prepareUserNamespace, reexecInUserNamespace, USERNS_MARKER } from './rootless.js';
import { keepHints, renderText, styleFor } from './report.js';
import { labGone, MAIN_JS, runTour, signalStatus, type DemoReport } from './tour.js';

export interface DemoOptions {
  json: boolean;
  keep: boolean;
  /** Colours in the text report (the CLI: stdout is a TTY and NO_COLOR is unset). */
  color: boolean;
  /** Arguments to pass on when re-executing (everything after `main.js`). */
  argv: readonly string[];
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

function keepInstructions(report: DemoReport): string {
  const enter = report.rootless ? `nsenter --target ${process.pid} --user --mount --preserve-credentials ` : '';
  return keepHints(report, enter, `${process.execPath} ${MAIN_JS}`).join('\n');
}

/** Runs the whole demo; resolves with the process exit status. */
export async function runDemo(opts: DemoOptions): Promise<number> {
  if (process.getuid?.() !== 0) return reexecInUserNamespace(MAIN_JS, opts.argv);
  const rootless = process.env[USERNS_MARKER] === '1';
  if (rootless) prepareUserNamespace();

  let lab: Lab | undefined;
  let endKeep: (() => void) | undefined;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (endKeep) return endKeep(); // --keep: a signal is the normal way out
    process.stderr.write(`\ntranproxy: demo interrupted (${sig}): removing the lab\n`);
    lab?.destroySync(); // SIGKILLs every process it started (proxies, server) and deletes the netns
    process.exit(signalStatus(sig));
  };
  for (const s of SIGNALS) process.on(s, onSignal);
  const progress = (line: string) => process.stderr.write(`tranproxy demo: ${line}\n`);
  try {
    const { report } = await runTour({ progress, rootless }, (l) => (lab = l));
    const prefix = report.lab.prefix;
    if (opts.keep) report.lab.kept = true;
    else {
      await lab!.destroy();
      report.lab.removed = labGone(prefix);
      report.ok &&= report.lab.removed;
    }
    process.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : renderText(report, styleFor(opts.color)));
    if (opts.keep) {
      process.stderr.write(keepInstructions(report));
      await new Promise<void>((resolve) => (endKeep = resolve));
      await lab!.destroy();
      process.stderr.write(`tranproxy demo: lab ${labGone(prefix) ? 'removed' : 'NOT fully removed'}\n`);
    }
    return report.ok ? 0 : 1;
  } finally {
    await (lab as Lab | undefined)?.destroy();
    for (const s of SIGNALS) process.removeListener(s, onSignal);
  }
}
