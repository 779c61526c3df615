// A generation's domain lists on their way to its data-plane workers: packed once by the
// supervisor (route/rule-lists.ts) into an anonymous memory file, which each worker of the
// generation (and one restarted after a crash) receives as a file descriptor and reads in one
// go: no JSON of a million names, nothing parsed or hashed again in the worker.
import { closeSync, ftruncateSync, readSync, writeSync } from 'node:fs';
import { sysMemfd } from '../kernel/ffi.js';
import { packRuleLists } from '../route/index.js';
import type { RunConfig } from '../config/run-config.js';

export class ListFile {
  private constructor(
    /** The memory file (the supervisor's descriptor). */
    readonly fd: number,
    readonly length: number,
  ) {}

  /**
   * `cfg` as it crosses to the workers (its rules' domain lists as references) and the file
   * holding the lists; no file when no rule has a list.
   */
  static of(cfg: RunConfig): { cfg: RunConfig; file: ListFile | undefined } {
    if (!cfg.routing?.rules.some((r) => r.domainList !== undefined)) return { cfg, file: undefined };
    const packed = packRuleLists(cfg.routing.rules);
    const wire = { ...cfg, routing: { ...cfg.routing, rules: packed.rules } };
    const fd = sysMemfd('tranproxy-rule-lists');
    try {
      ftruncateSync(fd, packed.length); // the padding after the last array reads as zeros
      // The lists' own arrays are written as they are: no copy of them all in memory.
      packed.write((piece, offset) => {
        for (let at = 0; at < piece.length; ) at += writeSync(fd, piece, at, piece.length - at, offset + at);
      });
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    return { cfg: wire, file: new ListFile(fd, packed.length) };
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** The packed lists a worker received as descriptor `fd` (closed once read). */
export function readListFile(fd: number, length: number): Uint8Array {
  try {
    const bytes = new Uint8Array(length);
    for (let at = 0; at < length; ) {
      const n = readSync(fd, bytes, at, length - at, at);
      if (n === 0) throw new Error('the rule lists file is shorter than announced');
      at += n;
    }
    return bytes;
  } finally {
    closeSync(fd);
  }
}
