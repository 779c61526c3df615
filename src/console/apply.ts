// Every console change takes one path, the config file's: read the file, edit the YAML
// document, validate the new text with the `--config` parser and the run configuration,
// stage the new file beside the old one (so a file that cannot be saved refuses the change),
// apply it to the running supervisor (a new worker generation, rules replaced), then rename
// the staged file over. A refused or unsavable change leaves the file and the proxy as they were.
import { readFile } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import { dirname } from 'node:path';
import type { Document } from 'yaml';
import { domainListPaths, type ConfigFile, type ParseOptions } from '../config/file.js';
import { confineToDirs, readNamedFile } from '../config/safe-read.js';
import type { RunConfig } from '../config/run-config.js';
import { TranproxyError, UsageError } from '../errors.js';
import type { SupervisorControl } from '../proxy/supervisor.js';
import { DEFAULT_DNS_PORT } from '../dns/config.js';
import {
  parseDoc,
  renderKeepingLines,
  stateOf,
  usageErrors,
  validateText,
  ValidationError,
  stageFile,
  type StagedFile,
  type ConsoleState,
  type DnsServerState,
  type FieldMap,
} from './document.js';

/** Builds the run configuration from a parsed file (flags typed on the command line still win). */
export type BuildConfig = (file: ConfigFile) => RunConfig;

export interface Snapshot {
  text: string;
  doc: Document;
  file: ConfigFile;
}

export class ConfigStore {
  private queue: Promise<unknown> = Promise.resolve();
  private readonly listeners = new Set<() => void>();
  /** A console change is being applied: its own event comes once the file is written. */
  private changing = false;

  constructor(
    readonly path: string,
    private readonly build: BuildConfig,
    private readonly control: SupervisorControl,
  ) {}

  /** Also tell listeners about SIGHUP reloads (the file was edited by hand). */
  watchReloads(): () => void {
    return this.control.onApplied(() => {
      if (!this.changing) this.emit();
    });
  }

  private emit(): void {
    for (const fn of this.listeners) fn();
  }

  /** The file as it is now (re-read every time, so SIGHUP edits and the console agree). */
  async read(): Promise<Snapshot> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (e) {
      throw new TranproxyError(
        `cannot read ${this.path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      );
    }
    const doc = parseDoc(text);
    return { text, doc, file: validateText(text, this.path, [], await this.namedFiles(text)) };
  }

  /**
   * The domain lists `text` names, read off the event loop. A path `known` does not hold
   * (one the console adds) must lie in the config file's directory.
   */
  private async namedFiles(text: string, known?: ReadonlySet<string>): Promise<ParseOptions> {
    const lists = new Map<string, string | Error>();
    for (const full of domainListPaths(text, this.path)) {
      if (lists.has(full)) continue;
      try {
        if (known && !known.has(full)) await confineToDirs('domain list', full, [dirname(this.path)]);
        lists.set(full, await readNamedFile('domain list', full));
      } catch (e) {
        lists.set(full, e as Error);
      }
    }
    return {
      readFile: (p) => {
        const v = lists.get(p);
        if (typeof v === 'string') return v;
        throw v ?? new TranproxyError(`domain list: ${p} was not read`);
      },
    };
  }

  /** The console's view of the file as it is now. */
  async current(): Promise<ConsoleState> {
    return this.state(await this.read());
  }

  state(snapshot: Snapshot): ConsoleState {
    const cfg = this.control.config();
    return stateOf(
      snapshot.file,
      snapshot.doc,
      {
        enabled: cfg.enabled,
        mode: cfg.mode,
        interfaces: cfg.inInterfaces,
        sources: cfg.sourceCidrs.map((c) => c.text),
        udp: cfg.udp,
      },
      this.control.rulesInKernel(),
      dnsServerOf(cfg),
    );
  }

  /** Called after every applied change (SSE `state`). */
  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /**
   * Edit, validate, apply, persist — one change at a time. `edit` may throw
   * ValidationError for input it refuses itself. Resolves with the new snapshot.
   */
  change(edit: (doc: Document, before: Snapshot) => void | Promise<void>, fields: FieldMap): Promise<Snapshot> {
    const run = this.queue.then(() => this.changeNow(edit, fields));
    this.queue = run.catch(() => {});
    return run;
  }

  /** What `edit` would make of the file now: validated and built, neither applied nor saved. */
  async preview(
    edit: (doc: Document, before: Snapshot) => void | Promise<void>,
    fields: FieldMap,
  ): Promise<{ before: Snapshot; text: string; file: ConfigFile; cfg: RunConfig }> {
    const before = await this.read();
    const doc = parseDoc(before.text);
    await edit(doc, before);
    const text = renderKeepingLines(before.text, doc);
    const file = validateText(
      text,
      this.path,
      fields,
      await this.namedFiles(text, new Set(domainListPaths(before.text, this.path))),
    );
    try {
      return { before, text, file, cfg: this.build(file) };
    } catch (e) {
      if (e instanceof UsageError) throw new ValidationError(usageErrors(e, fields));
      throw e;
    }
  }

  private async changeNow(
    edit: (doc: Document, before: Snapshot) => void | Promise<void>,
    fields: FieldMap,
  ): Promise<Snapshot> {
    const { before, text, file, cfg } = await this.preview(edit, fields);
    if (text === before.text) {
      this.emit();
      return { text, doc: parseDoc(text), file };
    }
    const staged = this.stage(text);
    // Only what the proxy runs on needs a new generation: check targets, subscription
    // bookkeeping or a password change are just saved.
    const previous = this.control.config();
    const applies = JSON.stringify(cfg) !== JSON.stringify(previous);
    if (applies) await this.applyOrDiscard(cfg, fields, staged);
    try {
      staged.commit();
    } catch (e) {
      if (applies) await this.rollBack(previous);
      throw new TranproxyError(`cannot save ${this.path}: ${errCode(e)}; the change was not applied`);
    }
    this.emit();
    return { text, doc: parseDoc(text), file };
  }

  /** The new file, written but not yet in place: a directory that cannot be written refuses the change. */
  private stage(text: string): StagedFile {
    try {
      return stageFile(this.path, text);
    } catch (e) {
      throw new TranproxyError(`cannot save ${this.path}: ${errCode(e)}; the change was not applied`);
    }
  }

  private async applyOrDiscard(cfg: RunConfig, fields: FieldMap, staged: StagedFile): Promise<void> {
    this.changing = true;
    try {
      await this.control.apply(cfg);
    } catch (e) {
      staged.discard();
      // e.g. "mode cannot change on reload", or the firewall refused the plan
      throw new ValidationError(
        e instanceof UsageError ? usageErrors(e, fields) : [{ field: '', message: (e as Error).message }],
      );
    } finally {
      this.changing = false;
    }
  }

  /** The file could not be put in place after the change ran: run the previous configuration again. */
  private async rollBack(previous: RunConfig): Promise<void> {
    this.changing = true;
    try {
      await this.control.apply(previous);
    } finally {
      this.changing = false;
    }
  }
}

function errCode(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? (e as Error).message;
}

/** Where the running DNS forwarder listens, its fake-IP range, and the LAN interfaces' addresses. */
export function dnsServerOf(cfg: RunConfig): DnsServerState {
  const dns = cfg.routing?.dns;
  const ifs = networkInterfaces();
  const lanAddresses = cfg.inInterfaces.flatMap((name) =>
    (ifs[name] ?? []).filter((a) => !a.internal && !a.address.startsWith('fe80:')).map((a) => a.address),
  );
  return {
    listen: dns ? { host: dns.listen?.host ?? null, port: dns.listen?.port ?? DEFAULT_DNS_PORT } : null,
    fakeIpRange: dns?.fakeIp?.enabled ? dns.fakeIp.range : null,
    lanAddresses,
  };
}
