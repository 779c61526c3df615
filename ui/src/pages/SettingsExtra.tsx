import { useState } from 'preact/hooks';
import { get, post, put, type State } from '../api';
import { t } from '../i18n';
import { FieldErr, FormStatus, Section, idOf, useAction } from '../ui';

/** An on/off switch named `name`, described by `#<id>-desc` and its error line. */
export function Switch(props: { name: string; on: boolean; busy: boolean; onClick: () => void }) {
  const id = idOf(props.name);
  return (
    <button
      type="button"
      role="switch"
      name={props.name}
      id={id}
      class={`switch${props.on ? ' on' : ''}`}
      aria-checked={props.on ? 'true' : 'false'}
      aria-describedby={`${id}-desc ${id}-err`}
      disabled={props.busy}
      onClick={props.onClick}
    >
      <span class="knob" aria-hidden="true" />
      <span class="switch-label">{t(props.on ? 'settings.on' : 'settings.off')}</span>
    </button>
  );
}

/** UDP capture on/off (TPROXY); shows what the running gateway does. */
export function UdpSwitch({ state, setState }: { state: State; setState: (s: State) => void }) {
  const a = useAction((f) => f === 'udp');
  const on = state.udp === true;
  const toggle = async () => {
    const r = await a.run(
      () => put<State>('/api/settings', { udp: !on }),
      (s) => t(s.udp ? 'udp.switchedOn' : 'udp.switchedOff'),
    );
    if (r) setState(r);
  };
  return (
    <Section title={t('udp.title')} id="udp">
      <div class="switch-row">
        <Switch name="udp" on={on} busy={a.busy} onClick={toggle} />
        <p id={`${idOf('udp')}-desc`} class="hint">
          {t(on ? 'udp.descOn' : 'udp.descOff')}
        </p>
      </div>
      <FieldErr name="udp" a={a} />
      <FormStatus a={a} />
    </Section>
  );
}

interface Diff {
  nodes: { added: string[]; removed: string[]; changed: string[] };
  groups: { added: string[]; removed: string[]; changed: string[] };
  rules: { before: number; after: number };
  settings: string[];
  unchanged: boolean;
}
interface ImportAnswer {
  diff: Diff;
  applied: boolean;
  state?: State;
}

function download(name: string, text: string): void {
  const url = URL.createObjectURL(new Blob([text], { type: 'application/yaml' }));
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** Export the config (secrets redacted unless asked) and import one (previewed, then saved and applied). */
export function ConfigTransfer({ setState }: { setState: (s: State) => void }) {
  const ex = useAction(() => false);
  const im = useAction((f) => f === 'yaml');
  const [secrets, setSecrets] = useState(false);
  const [pending, setPending] = useState<{ name: string; yaml: string; diff: Diff } | null>(null);

  const doExport = async () => {
    const r = await ex.run(
      () => get<{ yaml: string; filename: string }>(`/api/config/export${secrets ? '?secrets=1' : ''}`),
      () => t(secrets ? 'transfer.exportedSecrets' : 'transfer.exported'),
    );
    if (r) download(r.filename, r.yaml);
  };
  const pick = async (e: Event) => {
    const input = e.currentTarget as HTMLInputElement;
    const f = input.files?.[0];
    setPending(null);
    if (!f) return;
    const yaml = await f.text();
    input.value = '';
    const r = await im.run(() => post<ImportAnswer>('/api/config/import', { yaml }));
    if (r) setPending({ name: f.name, yaml, diff: r.diff });
  };
  const apply = async () => {
    if (!pending) return;
    const r = await im.run(
      () => post<ImportAnswer>('/api/config/import', { yaml: pending.yaml, apply: true }),
      () => t('transfer.imported'),
    );
    if (r?.state) setState(r.state);
    if (r) setPending(null);
  };

  return (
    <Section title={t('transfer.title')} id="transfer">
      <h3>{t('transfer.export')}</h3>
      <label class="check">
        <input
          type="checkbox"
          name="includeSecrets"
          checked={secrets}
          onChange={(e) => setSecrets((e.currentTarget as HTMLInputElement).checked)}
        />{' '}
        {t('transfer.includeSecrets')}
      </label>
      {secrets ? (
        <p class="warn" role="note" id="secrets-warning">
          {t('transfer.secretsWarning')}
        </p>
      ) : null}
      <div class="actions">
        <button type="button" id="export" disabled={ex.busy} onClick={doExport}>
          {t('transfer.exportButton')}
        </button>
      </div>
      <FormStatus a={ex} />

      <h3>{t('transfer.import')}</h3>
      <div class="field">
        <label for={idOf('yaml')}>{t('transfer.file')}</label>
        <input
          type="file"
          id={idOf('yaml')}
          name="yaml"
          accept=".yaml,.yml,text/yaml,application/yaml"
          onChange={pick}
        />
        <p class="hint">{t('transfer.importHint')}</p>
        <FieldErr name="yaml" a={im} />
      </div>
      {pending ? (
        <div class="import-preview" data-file={pending.name}>
          <DiffSummary d={pending.diff} />
          <div class="actions">
            <button type="button" class="primary" id="import-apply" disabled={im.busy} onClick={apply}>
              {t('transfer.apply')}
            </button>
            <button type="button" class="ghost" onClick={() => setPending(null)}>
              {t('common.cancel')}
            </button>
          </div>
        </div>
      ) : null}
      <FormStatus a={im} />
    </Section>
  );
}

function DiffSummary({ d }: { d: Diff }) {
  if (d.unchanged) return <p class="diff-none">{t('transfer.noChange')}</p>;
  const names = (l: string[]) => l.join(', ');
  const lines: [string, string][] = [];
  for (const [what, part] of [
    ['nodes', d.nodes],
    ['groups', d.groups],
  ] as const) {
    if (part.added.length) lines.push([`${what}-added`, t(`transfer.${what}Added`, { names: names(part.added) })]);
    if (part.removed.length)
      lines.push([`${what}-removed`, t(`transfer.${what}Removed`, { names: names(part.removed) })]);
    if (part.changed.length)
      lines.push([`${what}-changed`, t(`transfer.${what}Changed`, { names: names(part.changed) })]);
  }
  if (d.rules.before !== d.rules.after) lines.push(['rules', t('transfer.rules', d.rules)]);
  if (d.settings.length) lines.push(['settings', t('transfer.settings', { names: names(d.settings) })]);
  return (
    <ul class="diff">
      {lines.map(([k, text]) => (
        <li key={k} data-diff={k}>
          {text}
        </li>
      ))}
    </ul>
  );
}
