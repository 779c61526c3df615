// The raw option values of `tranproxy run` as commander and the config file give them (strings,
// before parsing); a leaf so the file schema can name it without importing run-config.
export interface RawRunOptions {
  mode?: string;
  capture?: string[];
  family?: string;
  listenPort?: string;
  port?: string[];
  excludePort?: string[];
  includeCidr?: string[];
  excludeCidr?: string[];
  sourceCidr?: string[];
  inInterface?: string[];
  inboundPort?: string[];
  excludeInboundPort?: string[];
  proxyUser?: string;
  excludeUid?: string[];
  excludeGid?: string[];
  firewall?: string;
  bypassMark?: string;
  tproxyMark?: string;
  tproxyTable?: string;
  tproxyRulePref?: string;
  preserveSource?: boolean;
  bypassPrivate?: boolean;
  connectTimeout?: string;
  idleTimeout?: string;
  headTimeout?: string;
  maxConnections?: string;
  logFormat?: string;
  header?: string[];
  nameserver?: string[];
  /** nginx-tranproxy spellings, and lower-case ones: true when given without a value. */
  SetForwardedFor?: string | boolean;
  setForwardedFor?: string | boolean;
  SetClientHostname?: string | boolean;
  setClientHostname?: string | boolean;
  xffMode?: string;
  maxHeadSize?: string;
  allowH2c?: boolean;
  httpOnly?: boolean;
  dstFromHost?: boolean;
  upstream?: string;
  sniffTimeout?: string;
  udp?: boolean;
  udpIdleTimeout?: string;
  workers?: string;
  relay?: string;
  /** true: the default address. */
  admin?: string | boolean;
  /** Bearer token for /connections and POST /quitquitquit. */
  adminTokenFile?: string;
  drainTimeout?: string;
  /** Config file only (no flag): the main switch. */
  enabled?: boolean;
  /** ADDRESS:PORT or PORT (loopback). */
  console?: string | boolean;
  /** Proxy mode: ADDRESS:PORT listeners, and USER:PASS (or a file holding it). */
  listenProxy?: string[];
  proxyAuth?: string;
  proxyAuthFile?: string;
}
