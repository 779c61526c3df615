// Picks the byte pump per connection: the zero-copy splice engine (engine/engine.ts)
// when nothing needs to see the bytes any more, the JS relay (relay.ts) otherwise.
import net from 'node:net';
import type { Duplex } from 'node:stream';
import {
  HandoverError,
  canSplice,
  createSpliceEngine,
  spliceAvailable,
  type EngineFlow,
  type SpliceEngine,
} from './engine/engine.js';
import { relay, type RelayOptions, type RelayResult } from './relay.js';

export interface AutoRelayOptions extends RelayOptions {
  /**
   * The engine to hand connections to. Omitted: a shared engine started on first use (one
   * worker thread) when splice is available. null: always the JS relay.
   */
  engine?: SpliceEngine | null;
  /** Called when the engine takes the flow: its live counters (head included) and close. */
  onSpliced?: (flow: EngineFlow) => void;
}

let shared: SpliceEngine | null | undefined;

/** The shared engine relayAuto() uses by default; null when splice is unavailable. */
export function defaultSpliceEngine(): SpliceEngine | null {
  if (shared === undefined) shared = spliceAvailable() ? createSpliceEngine() : null;
  return shared;
}

/** Whether relayAuto() would use the engine for this pair (given an engine). */
export function wouldSplice(
  client: net.Socket,
  upstream: Duplex,
  opts: Pick<RelayOptions, 'rewriter'>,
): upstream is net.Socket {
  return !opts.rewriter && upstream instanceof net.Socket && canSplice(client, upstream);
}

/**
 * relay() with the same contract and result, but connections without a rewriter between two
 * plain TCP sockets go to the splice engine. `head` (bytes a sniffer already took from the
 * client) is written upstream first and counted in bytesUp; so is anything Node had already
 * read from either socket (the engine flushes it before taking the descriptors).
 */
export function relayAuto(client: net.Socket, upstream: Duplex, opts: AutoRelayOptions): Promise<RelayResult> {
  const engine = opts.engine === undefined ? defaultSpliceEngine() : opts.engine;
  if (!engine || !wouldSplice(client, upstream, opts)) return relay(client, upstream, jsOptions(opts));
  const head = opts.head?.length ?? 0;
  if (opts.head && head > 0) upstream.write(opts.head);
  let spliced: Promise<RelayResult>;
  try {
    const onSpliced = opts.onSpliced;
    spliced = engine.relay(client, upstream, {
      idleTimeoutMs: opts.idleTimeoutMs,
      ...(onSpliced
        ? {
            onHandedOver: (f: EngineFlow) =>
              onSpliced({
                bytes: () => {
                  const b = f.bytes();
                  return { up: b.up + head, down: b.down };
                },
                close: () => f.close(),
              }),
          }
        : {}),
    });
  } catch (e) {
    if (!(e instanceof HandoverError)) throw e;
    // Nothing was done to the sockets (the head, if any, is already on its way).
    return withHead(relay(client, upstream, { ...jsOptions(opts), head: undefined }), head);
  }
  // Not an async function, and no closure over the sockets: once handed over, the
  // destroyed Node sockets can be collected while the engine relays (~4 KiB per connection).
  return withHead(spliced, head);
}

function withHead(p: Promise<RelayResult>, head: number): Promise<RelayResult> {
  return head ? p.then((r) => ({ ...r, bytesUp: r.bytesUp + head })) : p;
}

function jsOptions(opts: AutoRelayOptions): RelayOptions {
  const { engine: _engine, onSpliced: _onSpliced, ...rest } = opts;
  return rest;
}
