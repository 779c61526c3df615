import { useEffect, useState } from 'preact/hooks';
import type { State } from '../api';
import { delayClass, loadGroups, selectMember, setTcpDefault, type Group, type GroupMember } from '../api-nodes';
import { t, type Key } from '../i18n';
import { ErrorText, FormStatus, Section, outboundLabel, useAction } from '../ui';

/** Node groups as the data plane runs them: type, chosen member, each member's health. */
export function Groups({ state, setState }: { state: State; setState: (s: State) => void }) {
  const a = useAction(() => false);
  const [groups, setGroups] = useState<Group[] | null>(null);
  // Re-read after every state change (a reload may add, drop or re-pick groups).
  useEffect(() => {
    loadGroups().then(setGroups, () => setGroups([]));
  }, [state]);
  if (!groups?.length) return null;

  const choose = async (g: string, m: string) => {
    const r = await a.run(
      () => selectMember(g, m),
      () => t('groups.chosen', { group: g, member: outboundLabel(m) }),
    );
    if (r) setGroups(r);
  };
  const use = async (g: string) => {
    const r = await a.run(
      () => setTcpDefault(g),
      () => t('nodes.nowUsed', { name: g }),
    );
    if (r) setState(r);
  };
  const label = (n: string) => state.nodes.find((x) => x.name === n)?.label ?? outboundLabel(n);
  return (
    <Section title={t('groups.title', { n: groups.length })} id="groups">
      <ul class="groups">
        {groups.map((g) => (
          <li key={g.name} class="group" data-group={g.name}>
            <div class="node-main">
              <strong class="node-name">{g.name}</strong>
              <span class="tag">{t(`groups.type.${g.type}` as Key)}</span>
              {state.tcpNode === g.name ? <span class="tag used">{t('nodes.usedTcp')}</span> : null}
              <div class="muted">
                {t('groups.now')} <strong class="group-now">{label(g.now)}</strong>
              </div>
            </div>
            <div class="node-actions">
              {state.tcpNode === g.name ? null : (
                <button
                  type="button"
                  class="use"
                  disabled={a.busy}
                  onClick={() => use(g.name)}
                  aria-label={t('nodes.useLabel', { name: g.name })}
                >
                  {t('nodes.use')}
                </button>
              )}
            </div>
            <ul class="members">
              {g.members.map((m) => (
                <li key={m.name} data-member={m.name} class={m.name === g.now ? 'chosen' : ''}>
                  {g.type === 'select' ? (
                    <label>
                      <input
                        type="radio"
                        name={`group-${g.name}`}
                        checked={m.name === g.now}
                        disabled={a.busy}
                        onChange={() => choose(g.name, m.name)}
                      />{' '}
                      {label(m.name)}
                    </label>
                  ) : (
                    <span>
                      {m.name === g.now ? '● ' : '○ '}
                      {label(m.name)}
                    </span>
                  )}{' '}
                  <Health m={m} />
                </li>
              ))}
            </ul>
          </li>
        ))}
      </ul>
      <FormStatus a={a} />
    </Section>
  );
}

function Health({ m }: { m: GroupMember }) {
  if (!m.alive)
    return (
      <span class="bad member-health">
        {t('groups.down')}
        {m.error ? (
          <>
            {' '}
            <ErrorText p={{ field: '', message: m.error, status: 0 }} />
          </>
        ) : null}
      </span>
    );
  if (m.delayMs === undefined) return <span class="muted member-health">{t('groups.untested')}</span>;
  return (
    <span class={`delay member-health ${delayClass(m.delayMs)}`}>
      {t('nodes.delay', { ms: Math.round(m.delayMs) })}
    </span>
  );
}
