// `tranproxy console passwd --config FILE`: set the web console's password (a salted scrypt
// hash in the file's console.password-hash; the file's comments and layout are kept).
import { existsSync, readFileSync } from 'node:fs';
import { Command } from 'commander';
import { UsageError } from '../errors.js';
import { hashPassword } from '../console/auth.js';
import { parseDoc, writeFileAtomic } from '../console/document.js';

export const MIN_PASSWORD_LENGTH = 8;

function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    stream.setEncoding('utf8');
    stream.on('data', (d: string) => (text += d));
    stream.on('end', () => resolve(text));
    stream.on('error', reject);
  });
}

/** Prompt on the terminal without echo. */
function prompt(question: string): Promise<string> {
  const stdin = process.stdin;
  return new Promise((resolve, reject) => {
    process.stderr.write(question);
    let text = '';
    stdin.setRawMode(true);
    stdin.resume();
    stdin.setEncoding('utf8');
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') {
          done();
          return resolve(text);
        }
        if (ch === '\u0003') {
          done();
          return reject(new UsageError('cancelled'));
        }
        if (ch === '\u007f' || ch === '\b') text = text.slice(0, -1);
        else text += ch;
      }
    };
    const done = () => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
    };
    stdin.on('data', onData);
  });
}

/** Set console.password-hash in the config text (created when empty); the rest is kept. */
export function withPasswordHash(text: string, hash: string, path: string): string {
  const doc = parseDoc(text);
  if (doc.errors.length)
    throw new UsageError(`${path}: not valid YAML (${doc.errors[0]!.message.split('\n')[0]}): fix it first`);
  const top = doc.toJS() as unknown;
  if (top !== null && top !== undefined && (typeof top !== 'object' || Array.isArray(top))) {
    throw new UsageError(`${path}: expected a mapping of settings at the top`);
  }
  doc.setIn(['console', 'password-hash'], hash);
  return doc.toString();
}

export function consoleCommand(): Command {
  const cmd = new Command('console').description('web console administration');
  cmd
    .command('passwd')
    .description('set the web console password (stored as a salted scrypt hash in the config file)')
    .requiredOption('-c, --config <file>', 'the config file `tranproxy run --config` uses (created if missing)')
    .option('--password-stdin', 'read the password from standard input (first line) instead of prompting')
    .action(async (opts: { config: string; passwordStdin?: boolean }) => {
      let password: string;
      if (opts.passwordStdin || !process.stdin.isTTY) {
        password = (await readAll(process.stdin)).split(/\r?\n/)[0] ?? '';
      } else {
        password = await prompt('New console password: ');
        const again = await prompt('Repeat it: ');
        if (again !== password) throw new UsageError('the passwords differ; nothing changed');
      }
      if (password.length < MIN_PASSWORD_LENGTH)
        throw new UsageError(`the password is too short: use at least ${MIN_PASSWORD_LENGTH} characters`);
      const text = existsSync(opts.config) ? readFileSync(opts.config, 'utf8') : '';
      const next = withPasswordHash(text, await hashPassword(password), opts.config);
      writeFileAtomic(opts.config, next);
      process.stderr.write(
        `tranproxy: console password set in ${opts.config}; a running tranproxy uses it at the next login\n`,
      );
    });
  return cmd;
}
