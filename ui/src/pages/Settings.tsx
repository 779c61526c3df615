import { useEffect, useState } from 'preact/hooks';
import { put, type State } from '../api';
import type { AppCtx } from '../ctx';
import { ConfigTransfer, Switch, UdpSwitch } from './SettingsExtra';
import { t } from '../i18n';
import { Field, FieldErr, FormStatus, Section, idOf, splitList, splitLines, useAction } from '../ui';

const FIELDS = ['enabled', 'mode', 'lan.interfaces', 'lan.sources', 'tcpNode', 'udpNode', 'checkTargets', 'testUrl'];
const isField = (f: string) => FIELDS.includes(f);

interface Form {
  mode: State['mode'];
  interfaces: string;
  sources: string;
  tcpNode: string;
  udpNode: string;
  checkTargets: string;
  testUrl: string;
}
const formOf = (s: State): Form => ({
  mode: s.mode,
  interfaces: s.lan.interfaces.join(', '),
  sources: s.lan.sources.join(', '),
  tcpNode: s.tcpNode,
  udpNode: s.udpNode,
  checkTargets: s.checkTargets.join('\n'),
  testUrl: s.testUrl ?? '',
});

export function Settings({ state, setState }: AppCtx) {
  const sw = useAction((f) => f === 'enabled');
  const a = useAction(isField);
  const [form, setForm] = useState<Form>(() => formOf(state));
  const [dirty, setDirty] = useState(false);
  // Follow the server's state (SSE) while the user has not started editing.
  useEffect(() => {
    if (!dirty) setForm(formOf(state));
  }, [state, dirty]);

  const set = <K extends keyof Form>(k: K, v: Form[K]) => {
    setForm((f) => ({ ...f, [k]: v }));
    setDirty(true);
  };

  const toggle = async () => {
    const want = !state.enabled;
    // No optimistic flip: the switch shows the state the gateway answers (and /api/state after it).
    const r = await sw.run(
      () => put<State>('/api/settings', { enabled: want }),
      () => t(want ? 'settings.switchedOn' : 'settings.switchedOff'),
    );
    if (r) setState(r);
  };

  const save = async (e: Event) => {
    e.preventDefault();
    const r = await a.run(
      () =>
        put<State>('/api/settings', {
          mode: form.mode,
          lan: { interfaces: splitList(form.interfaces), sources: splitList(form.sources) },
          tcpNode: form.tcpNode,
          udpNode: form.udpNode,
          checkTargets: splitLines(form.checkTargets.replace(/,/g, '\n')),
          testUrl: form.testUrl,
        }),
      () => t('settings.saved'),
    );
    if (r) {
      setState(r);
      setDirty(false);
      setForm(formOf(r));
    }
  };

  const nodes = state.nodes.map((n) => n.name);
  const labelOf = (name: string) => state.nodes.find((n) => n.name === name)?.label || name;
  const withCurrent = (v: string) => (v && !['direct', 'same', ...nodes].includes(v) ? [v] : []);

  return (
    <>
      <Section title={t('settings.switch')} id="main-switch">
        <div class="switch-row">
          <Switch name="enabled" on={state.enabled} busy={sw.busy} onClick={toggle} />
          <p id={`${idOf('enabled')}-desc`} class="hint">
            {state.enabled
              ? state.applied
                ? t('settings.descOn')
                : t('settings.descNotApplied')
              : t('settings.descOff')}
          </p>
        </div>
        <FieldErr name="enabled" a={sw} />
        <FormStatus a={sw} />
      </Section>

      <form class="card" onSubmit={save} aria-labelledby="settings-h" noValidate>
        <h2 id="settings-h">{t('settings.routing')}</h2>
        <div class="grid2">
          <div class={`field${a.err('tcpNode') ? ' invalid' : ''}`}>
            <label for={idOf('tcpNode')}>{t('settings.tcpNode')}</label>
            <select
              id={idOf('tcpNode')}
              name="tcpNode"
              value={form.tcpNode}
              aria-describedby={`${idOf('tcpNode')}-err`}
              aria-invalid={a.err('tcpNode') ? 'true' : undefined}
              onChange={(e) => set('tcpNode', e.currentTarget.value)}
            >
              <option value="direct">{t('settings.directNoNode')}</option>
              {[...nodes, ...withCurrent(form.tcpNode)].map((n) => (
                <option key={n} value={n}>
                  {labelOf(n)}
                </option>
              ))}
            </select>
            <FieldErr name="tcpNode" a={a} />
          </div>
          <div class={`field${a.err('udpNode') ? ' invalid' : ''}`}>
            <label for={idOf('udpNode')}>{t('settings.udpNode')}</label>
            <select
              id={idOf('udpNode')}
              name="udpNode"
              value={form.udpNode}
              aria-describedby={`${idOf('udpNode')}-err`}
              aria-invalid={a.err('udpNode') ? 'true' : undefined}
              onChange={(e) => set('udpNode', e.currentTarget.value)}
            >
              <option value="same">{t('settings.sameAsTcp')}</option>
              <option value="direct">{t('settings.directNoNode')}</option>
              {[...nodes, ...withCurrent(form.udpNode).filter((v) => v !== 'same')].map((n) => (
                <option key={n} value={n}>
                  {labelOf(n)}
                </option>
              ))}
            </select>
            <FieldErr name="udpNode" a={a} />
          </div>
        </div>

        <fieldset class={`field${a.err('mode') ? ' invalid' : ''}`} aria-describedby={`${idOf('mode')}-err`}>
          <legend>{t('settings.mode')}</legend>
          <div class="radios">
            {(['redirect', 'tproxy'] as const).map((m) => (
              <label key={m} class="radio">
                <input type="radio" name="mode" value={m} checked={form.mode === m} onChange={() => set('mode', m)} />
                {t(m === 'redirect' ? 'settings.modeRedirect' : 'settings.modeTproxy')}
              </label>
            ))}
          </div>
          <FieldErr name="mode" a={a} />
        </fieldset>

        <div class="grid2">
          <Field
            a={a}
            name="lan.interfaces"
            label={t('settings.interfaces')}
            hint={t('settings.interfacesHint')}
            value={form.interfaces}
            onInput={(v) => set('interfaces', v)}
            autoComplete="off"
            spellcheck={false}
          />
          <Field
            a={a}
            name="lan.sources"
            label={t('settings.sources')}
            hint={t('settings.sourcesHint')}
            value={form.sources}
            onInput={(v) => set('sources', v)}
            autoComplete="off"
            spellcheck={false}
          />
        </div>
        <Field
          a={a}
          multiline
          rows={3}
          name="checkTargets"
          label={t('settings.checkTargets')}
          hint={t('settings.checkTargetsHint')}
          value={form.checkTargets}
          onInput={(v) => set('checkTargets', v)}
          spellcheck={false}
        />
        <Field
          a={a}
          name="testUrl"
          type="url"
          label={t('settings.testUrl')}
          hint={t('settings.testUrlHint')}
          value={form.testUrl}
          onInput={(v) => set('testUrl', v)}
          autoComplete="off"
          spellcheck={false}
        />

        <div class="actions">
          <button type="submit" class="primary" disabled={a.busy}>
            {a.busy ? t('common.saving') : t('common.save')}
          </button>
          <button
            type="button"
            class="ghost"
            disabled={a.busy || !dirty}
            onClick={() => {
              setDirty(false);
              setForm(formOf(state));
              a.clear();
            }}
          >
            {t('common.revert')}
          </button>
        </div>
        <FormStatus a={a} />
      </form>
      <UdpSwitch state={state} setState={setState} />
      <ConfigTransfer setState={setState} />
    </>
  );
}
