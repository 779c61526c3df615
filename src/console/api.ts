// The console's JSON API behind authentication (server.ts does cookies, CSRF, static files
// and SSE). Every change goes through ConfigStore.change: edit → validate → apply → save.
// The contract is src/console/API.md.
import type { Document } from 'yaml';
import type { Logger } from '../observe/log.js';
import type { SupervisorControl } from '../proxy/supervisor.js';
import type { ConfigStore, Snapshot } from './apply.js';
import {
  deleteNode,
  DNS_FIELDS,
  invalid,
  keepRedactedSecret,
  nodeNames,
  nodeUri,
  nodeUsers,
  renameNode,
  setIn,
  setNodeUri,
  SETTINGS_FIELDS,
  ValidationError,
  writeNode,
  type ConsoleState,
  type FieldMap,
} from './document.js';
import { baseName, importSummary, parseLinks, uniqueName } from './links.js';
import { Subscriptions, type FetchText } from './subscriptions.js';
import { checkDirect, checkViaNode, testNode, type ProbeOptions } from './probe.js';
import { NameResolver, resolverForNames } from '../dns/resolver.js';
import { DEFAULT_PROBE_URL } from '../outbound/group.js';
import type { ConfigFile } from '../config/file.js';
import { NodeTests } from './node-tests.js';
import { exportText, importDiff, importedDoc, replaceContents, type ImportDiff } from './transfer.js';
import { basename } from 'node:path';
import { fetchSubscription } from './subscription-fetch.js';
import { redactUri } from '../outbound/uri.js';
import { parseCheckTarget } from '../config/schema.js';
import { readLogs } from './logs-api.js';
import { connectionRow, liveConnections, readTraffic, type ConsoleConnection } from './live-api.js';

export interface ApiRequest {
  method: string;
  /** Path below /api, e.g. `/nodes/a/test`. */
  path: string;
  query: URLSearchParams;
  body: unknown;
}

export interface ApiResponse {
  status: number;
  body: unknown;
}

export interface ApiDeps {
  store: ConfigStore;
  control: SupervisorControl;
  log: Logger;
  /** Fetches a subscription URL's body with the subscription's User-Agent (injectable for tests). */
  fetchText?: FetchText;
}

const CHECK_TIMEOUT_MS = 5000;

type Obj = Record<string, unknown>;

function objectBody(body: unknown, field = ''): Obj {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid(field, 'expected a JSON object');
  return body as Obj;
}

function stringList(v: unknown, field: string): string[] {
  if (typeof v === 'string') return v.split(/[\s,]+/).filter(Boolean);
  if (Array.isArray(v) && v.every((x) => typeof x === 'string'))
    return (v as string[]).map((x) => x.trim()).filter(Boolean);
  throw invalid(field, 'expected a list of strings');
}

export class ConsoleApi {
  readonly subscriptions: Subscriptions;
  private readonly nodeTests = new NodeTests();

  constructor(private readonly deps: ApiDeps) {
    this.subscriptions = new Subscriptions({
      store: deps.store,
      fetchText: deps.fetchText ?? ((url, opts) => fetchSubscription(url, opts)),
      log: deps.log,
    });
  }

  state(snapshot: Snapshot): ConsoleState {
    return this.deps.store.state(snapshot);
  }

  current(): Promise<ConsoleState> {
    return this.deps.store.current();
  }

  async connections(): Promise<ConsoleConnection[]> {
    if (this.deps.control.live) return liveConnections(await this.deps.control.live());
    const now = Date.now();
    return (await this.deps.control.connections()).map((c) => connectionRow(c, now));
  }

  async handle(req: ApiRequest): Promise<ApiResponse> {
    try {
      return await this.route(req);
    } catch (e) {
      if (e instanceof ValidationError) return { status: 400, body: { errors: e.errors } };
      this.deps.log.error('console: request failed', {
        method: req.method,
        path: req.path,
        error: (e as Error).message,
      });
      return { status: 500, body: { error: (e as Error).message } };
    }
  }

  private change(edit: (doc: Document, before: Snapshot) => void | Promise<void>, fields: FieldMap): Promise<Snapshot> {
    return this.deps.store.change(edit, fields);
  }

  /** Choose the member of a select group (in the running data plane; not written to the file). */
  private async selectGroup(group: string, member: unknown): Promise<ApiResponse> {
    if (typeof member !== 'string' || !member) throw invalid('member', 'expected the name of a member of the group');
    try {
      await this.deps.control.selectGroup?.(group, member);
    } catch (e) {
      return { status: 400, body: { error: (e as Error).message } };
    }
    return { status: 200, body: (await this.deps.control.groups?.()) ?? [] };
  }

  private async route(req: ApiRequest): Promise<ApiResponse> {
    const { method, path } = req;
    const ok = (body: unknown): ApiResponse => ({ status: 200, body });
    const seg = path
      .split('/')
      .filter(Boolean)
      .map((s) => decodeURIComponent(s));
    const [a, b, c] = seg;

    if (method === 'GET' && path === '/state') return ok(await this.current());
    if (method === 'PUT' && path === '/settings')
      return ok(this.state(await this.change((doc) => this.editSettings(doc, objectBody(req.body)), SETTINGS_FIELDS)));
    if (a === 'nodes') {
      if (method === 'POST' && seg.length === 1) return this.addNodes(req.body);
      if (b !== undefined && seg.length === 2 && method === 'PUT')
        return ok(this.state(await this.editNode(b, req.body)));
      if (b !== undefined && seg.length === 2 && method === 'DELETE') return ok(this.state(await this.deleteNode(b)));
      if (b !== undefined && c === 'test' && seg.length === 3 && method === 'POST') return this.testNode(b);
    }
    if (a === 'node-tests' && seg.length === 1) {
      if (method === 'GET') return ok(await this.testResults(false));
      if (method === 'POST') return ok(await this.testResults(true));
    }
    if (a === 'subscriptions') {
      if (method === 'POST' && seg.length === 1) return this.subscribe(objectBody(req.body), false);
      if (method === 'POST' && b === 'refresh' && seg.length === 2) return this.subscribe(objectBody(req.body), true);
      if (method === 'DELETE' && seg.length === 1)
        return ok(this.state(await this.subscriptions.remove(req.query.get('url') ?? '')));
    }
    if (method === 'PUT' && path === '/dns')
      return ok(this.state(await this.change((doc) => this.editDns(doc, objectBody(req.body)), DNS_FIELDS)));
    if (method === 'POST' && path === '/dns/flush') return ok({ flushed: await this.deps.control.flushDns() });
    if (method === 'PUT' && path === '/rules') {
      const rules = objectBody(req.body).rules;
      if (!Array.isArray(rules)) throw invalid('rules', 'expected a list of rules');
      return ok(this.state(await this.change((doc) => setIn(doc, ['rules'], rules.length ? rules : undefined), [])));
    }
    if (a === 'connections') {
      if (method === 'GET' && seg.length === 1) return ok(await this.connections());
      if (method === 'DELETE' && b !== undefined && seg.length === 2) {
        const m = /^(\d+)-(\d+)$/.exec(b);
        const closed = m ? await this.deps.control.closeConnection(Number(m[1]), Number(m[2])) : false;
        return closed
          ? ok({})
          : {
              status: 404,
              body: {
                error: `no active connection '${b}' (it may have ended already)`,
              },
            };
      }
    }
    if (a === 'groups') {
      if (method === 'GET' && seg.length === 1) return ok((await this.deps.control.groups?.()) ?? []);
      if (method === 'PUT' && b !== undefined && seg.length === 2)
        return this.selectGroup(b, objectBody(req.body).member);
    }
    if (method === 'POST' && path === '/check') return this.check(req.body ?? {});
    if (method === 'GET' && path === '/logs') return ok(await readLogs(this.deps.control, req.query));
    if (method === 'GET' && path === '/config/export')
      return ok(await this.exportConfig(req.query.get('secrets') === '1'));
    if (method === 'POST' && path === '/config/import')
      return ok(await this.importConfig(objectBody(req.body, 'yaml')));
    if (method === 'GET' && path === '/traffic') return ok((await readTraffic(this.deps.control)) ?? {});
    return { status: 404, body: { error: `no such API route: ${method} /api${path}` } };
  }

  // -- settings --------------------------------------------------------------------------

  private editSettings(doc: Document, body: Obj): void {
    const known = ['enabled', 'mode', 'lan', 'tcpNode', 'udpNode', 'checkTargets', 'udp', 'testUrl'];
    for (const k of Object.keys(body))
      if (!known.includes(k)) throw invalid('', `unknown setting '${k}' (known: ${known.join(', ')})`);
    // Types are the schema's business (its messages land on the field); only shapes here.
    if ('enabled' in body) setIn(doc, ['enabled'], body.enabled);
    if ('mode' in body) setIn(doc, ['mode'], body.mode);
    if ('lan' in body) {
      const lan = objectBody(body.lan, 'lan.interfaces');
      if ('interfaces' in lan) {
        const list = stringList(lan.interfaces, 'lan.interfaces');
        setIn(doc, ['in-interfaces'], list.length ? list : undefined);
      }
      if ('sources' in lan) {
        const list = stringList(lan.sources, 'lan.sources');
        setIn(doc, ['source-cidrs'], list.length ? list : undefined);
      }
    }
    if ('tcpNode' in body) setIn(doc, ['default'], body.tcpNode);
    if ('udpNode' in body) setIn(doc, ['default-udp'], body.udpNode === 'same' ? undefined : body.udpNode);
    // `udp: false` is the default: written only while on.
    if ('udp' in body) setIn(doc, ['udp'], body.udp === false ? undefined : body.udp);
    if ('testUrl' in body) {
      if (typeof body.testUrl !== 'string') throw invalid('testUrl', 'expected an http:// or https:// URL');
      setIn(doc, ['console', 'test-url'], body.testUrl.trim() || undefined);
    }
    if ('checkTargets' in body) {
      const list = stringList(body.checkTargets, 'checkTargets');
      setIn(doc, ['check-targets'], list.length ? list : undefined);
    }
  }

  private editDns(doc: Document, body: Obj): void {
    if ('nameservers' in body) setIn(doc, ['dns', 'nameservers'], stringList(body.nameservers, 'dns.nameservers'));
    if ('cache' in body) setIn(doc, ['dns', 'cache'], body.cache);
    if ('fakeIp' in body) setIn(doc, ['dns', 'fake-ip', 'enabled'], body.fakeIp);
  }

  // -- nodes -----------------------------------------------------------------------------

  /** Pasted links: the usable ones are added (labels kept), the others reported as skipped. */
  private async addNodes(body: unknown): Promise<ApiResponse> {
    const links = objectBody(body, 'links').links;
    if (typeof links !== 'string' || !links.trim())
      throw invalid('links', 'paste one or more links (ss://, socks5://, http://)');
    const { links: parsed, skipped } = parseLinks(links);
    if (!parsed.length) throw invalid('links', `nothing imported: ${importSummary(0, skipped)}`);
    const added: string[] = [];
    const snap = await this.change(
      (doc) => {
        const taken = new Set(nodeNames(doc));
        for (const l of parsed) {
          const name = uniqueName(baseName(l.spec, l.label ?? ''), taken);
          writeNode(doc, name, l.uri, l.label);
          added.push(name);
        }
      },
      [['nodes', 'links']],
    );
    const state = this.state(snap);
    const report = {
      imported: added.map((name, i) => ({ name, label: parsed[i]!.label ?? name })),
      skipped,
      summary: importSummary(parsed.length, skipped),
    };
    return { status: 200, body: { ...state, added, report, state } };
  }

  private editNode(name: string, body: unknown): Promise<Snapshot> {
    const b = objectBody(body, 'uri');
    return this.change(
      (doc) => {
        const old = nodeUri(doc, name);
        if (old === undefined) throw invalid('name', `no node named '${name}'`);
        const newName = b.name === undefined || b.name === '' ? name : b.name;
        if (typeof newName !== 'string') throw invalid('name', 'expected a name');
        if (newName !== name && nodeNames(doc).includes(newName))
          throw invalid('name', `a node named '${newName}' exists already`);
        if (b.uri !== undefined) {
          if (typeof b.uri !== 'string' || !b.uri.trim())
            throw invalid('uri', 'expected a link, e.g. ss://… or socks5://host:1080');
          // The form shows the redacted link: `***` sent back keeps the stored secret, even
          // when the host, port or tag changed with it.
          if (b.uri.trim() !== redactUri(old)) setNodeUri(doc, name, keepRedactedSecret(b.uri.trim(), old));
        }
        if (newName !== name) renameNode(doc, name, newName);
      },
      [
        ['nodes', 'uri'],
        ['default', 'name'],
        ['rules', 'name'],
      ],
    );
  }

  private deleteNode(name: string): Promise<Snapshot> {
    return this.change(
      (doc) => {
        if (nodeUri(doc, name) === undefined) throw invalid('name', `no node named '${name}'`);
        const users = nodeUsers(doc, name);
        if (users.length) throw invalid('name', `node '${name}' is in use by ${users.join(', ')}: change those first`);
        deleteNode(doc, name);
      },
      [['nodes', 'name']],
    );
  }

  /**
   * Probes carry the bypass mark and resolve names with the nameservers the console shows
   * (`dns.nameservers`), else the proxy's (-N), else the system's.
   */
  private probeOptions(file: ConfigFile): ProbeOptions {
    const cfg = this.deps.control.config();
    const servers = (file.dns?.nameservers ?? []).map((n) =>
      n.host.includes(':') ? `[${n.host}]:${n.port}` : `${n.host}:${n.port}`,
    );
    const configured = servers.length ? new NameResolver({ ...cfg.resolver, nameservers: servers }) : undefined;
    const resolve = configured
      ? (name: string) => configured.resolve(name)
      : resolverForNames(cfg.resolver, cfg.nameserversGiven);
    return { mark: cfg.bypassMark, timeoutMs: CHECK_TIMEOUT_MS, ...(resolve ? { resolve } : {}) };
  }

  private async testNode(name: string): Promise<ApiResponse> {
    const { doc, file } = await this.deps.store.read();
    const uri = nodeUri(doc, name);
    if (uri === undefined) return { status: 404, body: { error: `no node named '${name}'` } };
    const opts = this.probeOptions(file);
    const url = file.console?.testUrl ?? DEFAULT_PROBE_URL;
    return { status: 200, body: await this.nodeTests.run(name, uri, () => testNode(uri, name, url, opts)) };
  }

  /** The kept node test results (GET), or every node tested afresh first ("Test all"). */
  private async testResults(runAll: boolean): Promise<{ url: string; results: Record<string, unknown> }> {
    const { doc, file } = await this.deps.store.read();
    const nodes = nodeNames(doc).flatMap((name) => {
      const uri = nodeUri(doc, name);
      return uri === undefined ? [] : [{ name, uri }];
    });
    const url = file.console?.testUrl ?? DEFAULT_PROBE_URL;
    if (!runAll) return { url, results: this.nodeTests.current(nodes) };
    const opts = this.probeOptions(file);
    return { url, results: await this.nodeTests.runAll(nodes, (name, uri) => testNode(uri, name, url, opts)) };
  }

  /** The node a group (through nested groups) uses now; a node or built-in as is. */
  private async memberInUse(name: string): Promise<string> {
    const groups = (await this.deps.control.groups?.()) ?? [];
    let at = name;
    for (let hops = 0; hops < 32; hops++) {
      const g = groups.find((x) => x.name === at);
      if (!g) break;
      at = g.now;
    }
    return at;
  }

  // -- import / export -------------------------------------------------------------------

  private async exportConfig(includeSecrets: boolean): Promise<{ yaml: string; filename: string; redacted: boolean }> {
    const { text } = await this.deps.store.read();
    return {
      yaml: exportText(text, includeSecrets),
      filename: basename(this.deps.store.path),
      redacted: !includeSecrets,
    };
  }

  /** `{ yaml }`: what importing it would change; `{ yaml, apply: true }`: import it (saved and applied, or nothing). */
  private async importConfig(body: Obj): Promise<{ diff: ImportDiff; applied: boolean; state?: ConsoleState }> {
    if (typeof body.yaml !== 'string' || !body.yaml.trim())
      throw invalid('yaml', 'expected the YAML text of a config file');
    const yamlText = body.yaml;
    const edit = (doc: Document) => replaceContents(doc, importedDoc(yamlText, doc));
    const { before, file } = await this.deps.store.preview(edit, []);
    const diff = importDiff(before.file, file);
    if (body.apply !== true) return { diff, applied: false };
    const snap = await this.change(edit, []);
    return { diff, applied: true, state: this.state(snap) };
  }

  // -- subscriptions ---------------------------------------------------------------------

  private async subscribe(body: Obj, refresh: boolean): Promise<ApiResponse> {
    const urlValue = body.url;
    if (typeof urlValue !== 'string' || !/^https?:\/\/\S+$/i.test(urlValue.trim()))
      throw invalid('url', 'expected an http:// or https:// URL');
    const settings: { interval?: string; userAgent?: string } = {};
    if (body.interval !== undefined) {
      if (typeof body.interval !== 'string' && typeof body.interval !== 'number')
        throw invalid('interval', 'expected a duration, e.g. 12h, or off');
      settings.interval = String(body.interval);
    }
    if (body.userAgent !== undefined) {
      if (typeof body.userAgent !== 'string' || !body.userAgent.trim() || /[\x00-\x1f\x7f]/.test(body.userAgent))
        throw invalid('userAgent', 'expected a User-Agent header value');
      settings.userAgent = body.userAgent.trim();
    }
    const { snapshot, report } = await this.subscriptions.fetchAndMerge(urlValue.trim(), refresh, settings);
    const state = this.state(snapshot);
    return { status: 200, body: { ...state, report, state } };
  }

  // -- check -----------------------------------------------------------------------------

  private async check(body: unknown): Promise<ApiResponse> {
    const b = objectBody(body, 'targets');
    const { doc, file } = await this.deps.store.read();
    const targets = b.targets === undefined ? file.checkTargets : stringList(b.targets, 'targets');
    if (!targets.length) throw invalid('targets', 'no check targets: add some (HOST:PORT) in the settings');
    for (const t of targets) {
      try {
        parseCheckTarget(t);
      } catch (e) {
        throw invalid('targets', (e as Error).message.replace(/^: /, ''));
      }
    }
    // A group checks through the member it uses now (the data plane's choice).
    const node = await this.memberInUse(file.default);
    const uri = node === 'direct' || node === 'reject' ? undefined : nodeUri(doc, node);
    const opts = this.probeOptions(file);
    const results = await Promise.all(
      targets.map(async (target) => {
        const [direct, via] = await Promise.all([
          checkDirect(target, opts),
          node === 'reject'
            ? Promise.resolve({ ok: false, error: 'the TCP node is reject' })
            : uri === undefined
              ? checkDirect(target, opts)
              : checkViaNode(uri, node, target, opts),
        ]);
        return {
          target,
          direct,
          node: { ...via, node: file.default, ...(node !== file.default ? { member: node } : {}) },
        };
      }),
    );
    return { status: 200, body: { results } };
  }
}
