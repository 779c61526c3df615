import { useEffect, useState } from 'preact/hooks';
import { put, type State } from '../api';
import type { AppCtx } from '../ctx';
import { ConfigTransfer, Switch, UdpSwitch } from './SettingsExtra';
import { t } from '../i18n';
import { type Action, Field, FieldErr, FormStatus, Section, idOf, splitList, splitLines, useAction } from '../ui';

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

type SetField = <K extends keyof Form>(k: K, v: Form[K]) => void;

export function Settings({ state, setState }: AppCtx) {
  return (
    <>
      <MainSwitch state={state} setState={setState} />
      <RoutingForm state={state} setState={setState} />
      <UdpSwitch state={state} setState={setState} />
      <ConfigTransfer setState={setState} />
    </>
  );
}

/** The main switch: capture on or off, as the gateway answers (no optimistic flip). */
function MainSwitch({ state, setState }: { state: State; setState: (s: State) => void }) {
  const sw = useAction((f) => f === 'enabled');
  const toggle = async () => {
    const want = !state.enabled;
    // No optimistic flip: the switch shows the state the gateway answers (and /api/state after it).
    const r = await sw.run(
      () => put<State>('/api/settings', { enabled: want }),
      () => t(want ? 'settings.switchedOn' : 'settings.switchedOff'),
    );
    if (r) setState(r);
  };
  return (
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
  );
}

/** Nodes, capture mode, LAN interfaces and sources, check targets and test URL: saved together. */
function RoutingForm({ state, setState }: { state: State; setState: (s: State) => void }) {
  const a = useAction(isField);
  const [form, setForm] = useState<Form>(() => formOf(state));
  const [dirty, setDirty] = useState(false);
  // Follow the server's state (SSE) while the user has not started editing.
  useEffect(() => {
    if (!dirty) setForm(formOf(state));
  }, [state, dirty]);

  const set: SetField = (k, v) => {
    setForm((f) => ({ ...f, [k]: v }));
    setDirty(true);
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

  return (
    <form class="card" onSubmit={save} aria-labelledby="settings-h" noValidate>
      <h2 id="settings-h">{t('settings.routing')}</h2>
      <NodeChoices a={a} form={form} set={set} state={state} />
      <ModeField a={a} mode={form.mode} set={set} />
      <CaptureFields a={a} form={form} set={set} />
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
  );
}

/** The TCP and UDP nodes; a configured name that is no longer a node stays choosable. */
function NodeChoices({ a, form, set, state }: { a: Action; form: Form; set: SetField; state: State }) {
  const nodes = state.nodes.map((n) => n.name);
  const labelOf = (name: string) => state.nodes.find((n) => n.name === name)?.label || name;
  const withCurrent = (v: string) => (v && !['direct', 'same', ...nodes].includes(v) ? [v] : []);

  return (
    <div class="grid2">
      <NodeSelect
        a={a}
        name="tcpNode"
        value={form.tcpNode}
        set={set}
        fixed={[['direct', t('settings.directNoNode')]]}
        names={[...nodes, ...withCurrent(form.tcpNode)]}
        labelOf={labelOf}
      />
      <NodeSelect
        a={a}
        name="udpNode"
        value={form.udpNode}
        set={set}
        fixed={[
          ['same', t('settings.sameAsTcp')],
          ['direct', t('settings.directNoNode')],
        ]}
        names={[...nodes, ...withCurrent(form.udpNode).filter((v) => v !== 'same')]}
        labelOf={labelOf}
      />
    </div>
  );
}

/** The TCP or UDP node: the fixed choices ([value, label]), then the nodes by name. */
function NodeSelect(props: {
  a: Action;
  name: 'tcpNode' | 'udpNode';
  value: string;
  set: SetField;
  fixed: [string, string][];
  names: string[];
  labelOf: (name: string) => string;
}) {
  const { a, name, value, set, labelOf } = props;
  return (
    <div class={`field${a.err(name) ? ' invalid' : ''}`}>
      <label for={idOf(name)}>{t(name === 'tcpNode' ? 'settings.tcpNode' : 'settings.udpNode')}</label>
      <select
        id={idOf(name)}
        name={name}
        value={value}
        aria-describedby={`${idOf(name)}-err`}
        aria-invalid={a.err(name) ? 'true' : undefined}
        onChange={(e) => set(name, e.currentTarget.value)}
      >
        {props.fixed.map(([v, label]) => (
          <option key={v} value={v}>
            {label}
          </option>
        ))}
        {props.names.map((n) => (
          <option key={n} value={n}>
            {labelOf(n)}
          </option>
        ))}
      </select>
      <FieldErr name={name} a={a} />
    </div>
  );
}

function ModeField({ a, mode, set }: { a: Action; mode: Form['mode']; set: SetField }) {
  return (
    <fieldset class={`field${a.err('mode') ? ' invalid' : ''}`} aria-describedby={`${idOf('mode')}-err`}>
      <legend>{t('settings.mode')}</legend>
      <div class="radios">
        {(['redirect', 'tproxy'] as const).map((m) => (
          <label key={m} class="radio">
            <input type="radio" name="mode" value={m} checked={mode === m} onChange={() => set('mode', m)} />
            {t(m === 'redirect' ? 'settings.modeRedirect' : 'settings.modeTproxy')}
          </label>
        ))}
      </div>
      <FieldErr name="mode" a={a} />
    </fieldset>
  );
}

/** Which LAN traffic is captured, and what the check and node test ask for. */
function CaptureFields({ a, form, set }: { a: Action; form: Form; set: SetField }) {
  return (
    <>
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
    </>
  );
}
