// Where firewall changes act: the current network namespace or a named one.

/** Where to act: the current network namespace, or a named one (`ip netns exec NAME`). */
export interface Target {
  netns?: string;
}
