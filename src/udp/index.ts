// UDP flows over TPROXY: the relay and the outbound interface other UDP outbounds implement.
export { startUdpTproxy, type UdpTproxy, type UdpTproxyOptions, type UdpTproxyStats } from './tproxy.js';
export { UdpRelay, type UdpRelayOptions, type UdpRelayStats } from './relay.js';
export { directUdpOutbound, type DirectUdpOptions } from './direct.js';
export type { UdpFlowInfo, UdpOutbound, UdpSession } from './types.js';
