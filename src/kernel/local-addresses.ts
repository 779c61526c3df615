// This host's addresses, for the loop guard (a destination at one of them on the proxy's
// own port would be the proxy connecting to itself). Refreshed at most every few seconds:
// addresses change rarely and the check runs once per connection.
import os from 'node:os';

export class LocalAddresses {
  private cache = new Set<string>();
  private at = 0;

  constructor(private readonly refreshMs = 5000) {}

  has(address: string): boolean {
    if (Date.now() - this.at > this.refreshMs) {
      this.cache = new Set(['0.0.0.0', '::']);
      for (const list of Object.values(os.networkInterfaces())) for (const a of list ?? []) this.cache.add(a.address);
      this.at = Date.now();
    }
    return this.cache.has(address) || address.startsWith('127.');
  }
}
