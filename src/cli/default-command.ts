// The image's entry point takes nginx-tranproxy's arguments unchanged (`IMAGE -P 80 -H a:b --
// cmd`): with TRANPROXY_DEFAULT_COMMAND set (the image sets `run`), arguments that do not
// start with a subcommand go to that subcommand.

/** Top-level arguments that are not a subcommand but still mean the program itself. */
const PROGRAM_FLAGS = new Set(['-h', '--help', '-V', '--version', 'help']);

/** `args` (after node and the script) with `dflt` put first unless they already name a subcommand. */
export function withDefaultCommand(
  args: readonly string[],
  subcommands: readonly string[],
  dflt: string | undefined,
): string[] {
  if (!dflt) return [...args];
  if (!subcommands.includes(dflt))
    throw new Error(`TRANPROXY_DEFAULT_COMMAND: '${dflt}' is not one of ${subcommands.join(', ')}`);
  const first = args[0];
  if (first === undefined || subcommands.includes(first) || PROGRAM_FLAGS.has(first)) return [...args];
  return [dflt, ...args];
}

/** Makes `run` print its parsed configuration as JSON and exit (the lean entry's parser). */
export const PARSE_ONLY_ENV = 'TRANPROXY_PARSE_ONLY';

/** `run … --one-process …` (before a bare --), not asking for help, not the parser itself: the lean entry. */
export function wantsOneProcess(args: readonly string[], env = process.env): boolean {
  if (args[0] !== 'run' || env[PARSE_ONLY_ENV] === '1') return false;
  const end = args.indexOf('--');
  const own = end < 0 ? args.slice(1) : args.slice(1, end);
  return own.includes('--one-process') && !own.some((a) => a === '-h' || a === '--help');
}

/** `run` not asking for help, not the parser itself: the lean supervisor entry (lean-run.ts). */
export function wantsLeanRun(args: readonly string[], env = process.env): boolean {
  if (args[0] !== 'run' || env[PARSE_ONLY_ENV] === '1') return false;
  const end = args.indexOf('--');
  const own = end < 0 ? args.slice(1) : args.slice(1, end);
  return !own.some((a) => a === '-h' || a === '--help');
}
