import { useEffect, useState } from 'preact/hooks';
import { post, put, type DnsServer as Server, type State } from '../api';
import { t } from '../i18n';
import type { AppCtx } from '../ctx';
import { Field, FieldErr, FormStatus, Section, idOf, splitList, useAction } from '../ui';

const FIELDS = ['dns.nameservers', 'dns.cache', 'dns.fakeIp'];

export function Dns({ state, setState }: AppCtx) {
  const a = useAction((f) => FIELDS.includes(f));
  const flush = useAction(() => false);
  const [ns, setNs] = useState(state.dns.nameservers.join('\n'));
  const [cache, setCache] = useState(state.dns.cache);
  const [fakeIp, setFakeIp] = useState(state.dns.fakeIp);
  const [dirty, setDirty] = useState(false);
  useEffect(() => {
    if (dirty) return;
    setNs(state.dns.nameservers.join('\n'));
    setCache(state.dns.cache);
    setFakeIp(state.dns.fakeIp);
  }, [state, dirty]);

  const save = async (e: Event) => {
    e.preventDefault();
    const r = await a.run(
      () => put<State>('/api/dns', { nameservers: splitList(ns), cache, fakeIp }),
      () => t('dns.saved'),
    );
    if (r) {
      setState(r);
      setDirty(false);
    }
  };
  const doFlush = () =>
    flush.run(
      () => post<{ flushed?: number }>('/api/dns/flush'),
      () => t('dns.cleared'),
    );

  const check = (name: string, label: string, hint: string, v: boolean, set: (b: boolean) => void) => (
    <div class={`field check${a.err(name) ? ' invalid' : ''}`}>
      <input
        type="checkbox"
        id={idOf(name)}
        name={name}
        checked={v}
        aria-describedby={`${idOf(name)}-hint ${idOf(name)}-err`}
        onChange={(e) => {
          set(e.currentTarget.checked);
          setDirty(true);
        }}
      />
      <label for={idOf(name)}>{label}</label>
      <p class="hint" id={`${idOf(name)}-hint`}>
        {hint}
      </p>
      <FieldErr name={name} a={a} />
    </div>
  );

  return (
    <>
      {state.dnsServer ? <DnsServer s={state.dnsServer} /> : null}
      <form class="card" onSubmit={save} aria-labelledby="dns-h" noValidate>
        <h2 id="dns-h">{t('dns.resolver')}</h2>
        <Field
          a={a}
          multiline
          rows={3}
          name="dns.nameservers"
          label={t('dns.nameservers')}
          hint={t('dns.nameserversHint')}
          placeholder="1.1.1.1"
          value={ns}
          onInput={(v) => {
            setNs(v);
            setDirty(true);
          }}
          spellcheck={false}
        />
        {check('dns.cache', t('dns.cache'), t('dns.cacheHint'), cache, setCache)}
        {check('dns.fakeIp', t('dns.fakeIp'), t('dns.fakeIpHint'), fakeIp, setFakeIp)}
        <div class="actions">
          <button type="submit" class="primary" disabled={a.busy}>
            {a.busy ? t('common.saving') : t('common.save')}
          </button>
        </div>
        <FormStatus a={a} />
      </form>
      <Section title={t('dns.cacheTitle')} id="dns-cache">
        <p class="hint">{t('dns.cacheClearHint')}</p>
        <div class="actions">
          <button type="button" onClick={doFlush} disabled={flush.busy}>
            {t('dns.clear')}
          </button>
        </div>
        <FormStatus a={flush} />
      </Section>
    </>
  );
}

const hostPort = (h: string, p: number) => (h.includes(':') ? `[${h}]:${p}` : `${h}:${p}`);
const forClients = (h: string, p: number) => (p === 53 ? h : hostPort(h, p));

/** Where LAN hosts send their DNS queries, and the fake-IP range (when the API says). */
function DnsServer({ s }: { s: Server }) {
  const l = s.listen;
  const lan = s.lanAddresses;
  return (
    <Section title={t('dns.listenTitle')} id="dns-server">
      {l === null ? (
        <p class="hint" id="dns-listen">
          {t('dns.off')}
        </p>
      ) : (
        <>
          <p class="dns-addr" id="dns-listen">
            {l.host ? (
              <code class="big">{forClients(l.host, l.port)}</code>
            ) : lan.length ? (
              lan.map((h) => (
                <code class="big" key={h}>
                  {forClients(h, l.port)}
                </code>
              ))
            ) : (
              t('dns.listenAny', { port: l.port, addr: t('dns.lanAddr') })
            )}
          </p>
          <p class="hint">{t('dns.listenHint')}</p>
        </>
      )}
      <dl class="kv">
        <dt>{t('dns.fakeRange')}</dt>
        <dd id="dns-fake-range">{s.fakeIpRange ? <code>{s.fakeIpRange}</code> : t('dns.fakeRangeOff')}</dd>
      </dl>
    </Section>
  );
}
