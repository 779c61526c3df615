import { useEffect, useState } from 'preact/hooks';
import { post, put, type State } from '../api';
import type { AppCtx } from '../main';
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
    const r = await a.run(() => put<State>('/api/dns', { nameservers: splitList(ns), cache, fakeIp }), 'DNS settings saved.');
    if (r) {
      setState(r);
      setDirty(false);
    }
  };
  const doFlush = () => flush.run(() => post<{ flushed?: number }>('/api/dns/flush'), 'DNS cache cleared.');

  const check = (name: string, label: string, hint: string, v: boolean, set: (b: boolean) => void) => (
    <div class={'field check' + (a.err(name) ? ' invalid' : '')}>
      <input type="checkbox" id={idOf(name)} name={name} checked={v} aria-describedby={`${idOf(name)}-hint ${idOf(name)}-err`} onChange={(e) => { set(e.currentTarget.checked); setDirty(true); }} />
      <label for={idOf(name)}>{label}</label>
      <p class="hint" id={idOf(name) + '-hint'}>{hint}</p>
      <FieldErr name={name} a={a} />
    </div>
  );

  return (
    <>
      <form class="card" onSubmit={save} aria-labelledby="dns-h" noValidate>
        <h2 id="dns-h">Resolver</h2>
        <Field a={a} multiline rows={3} name="dns.nameservers" label="Upstream nameservers" hint="IP addresses (optionally :port), one per line. Empty: the -N nameservers, else /etc/resolv.conf." placeholder="1.1.1.1" value={ns} onInput={(v) => { setNs(v); setDirty(true); }} spellcheck={false} />
        {check('dns.cache', 'Cache answers', 'Keep answers for their TTL.', cache, setCache)}
        {check('dns.fakeIp', 'Fake IP', 'Answer with addresses from a private pool and route by name.', fakeIp, setFakeIp)}
        <div class="actions">
          <button type="submit" class="primary" disabled={a.busy}>{a.busy ? 'Saving…' : 'Save'}</button>
        </div>
        <FormStatus a={a} />
      </form>
      <Section title="Cache">
        <p class="hint">Forget every cached answer now.</p>
        <div class="actions">
          <button type="button" onClick={doFlush} disabled={flush.busy}>Clear cache</button>
        </div>
        <FormStatus a={flush} />
      </Section>
    </>
  );
}
