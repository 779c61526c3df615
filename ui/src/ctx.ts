// What every page gets from the app shell: the gateway's state and a way to change or reload it.
import type { State } from './api';

export interface AppCtx {
  state: State;
  setState: (s: State) => void;
  reload: () => Promise<void>;
}
