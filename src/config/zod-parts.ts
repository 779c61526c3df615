// Zod building blocks the file schema and the settings table share: scalars checked by the
// values.ts parsers, lists that also take a single value, and the messages they give.
import { z } from 'zod';
import { UsageError } from '../errors.js';
import { suggest } from '../route/index.js';

/** How a value reads in a message. */
export function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'an empty value';
  if (typeof v === 'string') return `'${v}'`;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return 'a list';
  return 'a mapping';
}

/** Run one of values.ts's parsers (they throw UsageError "<flag>: <reason>") as a zod check. */
export function check(parse: (text: string) => unknown) {
  return (v: string | number, ctx: z.RefinementCtx) => {
    try {
      parse(String(v));
    } catch (e) {
      if (!(e instanceof UsageError)) throw e;
      ctx.addIssue({ code: 'custom', message: e.message.replace(/^: /, '') });
    }
  };
}

/** The parser's result as the schema's output; its UsageError as the issue. */
export function parsed<T>(parse: (text: string) => T) {
  return (v: string | number, ctx: z.RefinementCtx): T => {
    try {
      return parse(String(v));
    } catch (e) {
      if (!(e instanceof UsageError)) throw e;
      ctx.addIssue({ code: 'custom', message: e.message.replace(/^: /, '') });
      return z.NEVER;
    }
  };
}

/** A string or number (YAML gives `80` as a number, `8000-8100` as a string), checked by `parse`. */
export function scalar(what: string, parse?: (text: string) => unknown) {
  const base = z.custom<string | number>((v) => typeof v === 'string' || typeof v === 'number', {
    message: `expected ${what}`,
  });
  return parse ? base.superRefine(check(parse)) : base;
}

export function text(what: string, parse?: (text: string) => unknown) {
  const base = z.custom<string>((v) => typeof v === 'string' && v.trim().length > 0, { message: `expected ${what}` });
  return parse ? base.superRefine(check(parse)) : base;
}

/** A list; a single value stands for a list of one. */
export function many<T extends z.ZodType>(item: T) {
  return z.preprocess((v) => (v === undefined || Array.isArray(v) ? v : [v]), z.array(item));
}

export const bool = z.custom<boolean>((v) => typeof v === 'boolean', { message: 'expected true or false' });

export function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  return z.custom<T[number]>((v) => typeof v === 'string' && (values as readonly string[]).includes(v), {
    error: (iss) => {
      const guess = typeof iss.input === 'string' ? suggest(iss.input, values) : undefined;
      return `${describe(iss.input)} is not one of ${values.join(', ')}${guess ? `; did you mean '${guess}'?` : ''}`;
    },
  });
}
