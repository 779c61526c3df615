// SOCKS5 outbound: RFC 1928 CONNECT with RFC 1929 username/password authentication.
// The wire codec is pure (socks5-wire.ts, re-exported here), so it can be unit-tested and
// fuzzed without sockets.
import type { Duplex } from 'node:stream';
import { formatEndpoint } from '../kernel/sockaddr.js';
import { connectNode, DEFAULT_HANDSHAKE_TIMEOUT_MS, Handshake, NodeOutbound } from './node-conn.js';
import { OutboundError, type ConnectContext, type Destination, type TcpOutbound } from './types.js';
import type { Socks5NodeSpec } from './uri.js';
import {
  ATYP_DOMAIN,
  CMD_CONNECT,
  destinationAddress,
  encodeGreeting,
  encodeRequest,
  encodeUserPassAuth,
  METHOD_NO_AUTH,
  METHOD_NONE_ACCEPTABLE,
  METHOD_USERPASS,
  parseAuthReply,
  parseConnectReply,
  parseMethodReply,
  socksReplyText,
} from './socks5-wire.js';

export * from './socks5-wire.js';

// ── the handshake, shared by CONNECT (below) and UDP ASSOCIATE (udp-socks5.ts) ──

/**
 * Greeting and method selection, then RFC 1929 username/password when the node picks it and
 * the node URI has credentials. On return the node waits for the request; otherwise the
 * handshake has failed (EAUTH, EHANDSHAKE) and this throws.
 */
export async function negotiateSocks5Auth(
  hs: Handshake,
  creds: Pick<Socks5NodeSpec, 'username' | 'password'>,
): Promise<void> {
  const hasCreds = creds.username !== undefined;
  hs.write(encodeGreeting(hasCreds ? [METHOD_NO_AUTH, METHOD_USERPASS] : [METHOD_NO_AUTH]));
  const m = await hs.read(parseMethodReply, 'method selection reply');
  if (m.method === METHOD_NONE_ACCEPTABLE) {
    hs.failWith(
      'EAUTH',
      hasCreds
        ? `node ${hs.where} accepted none of the offered authentication methods`
        : `node ${hs.where} requires authentication (add user:password to the node URI)`,
    );
  } else if (m.method === METHOD_USERPASS && hasCreds) {
    hs.write(encodeUserPassAuth(creds.username!, creds.password ?? ''));
    const a = await hs.read(parseAuthReply, 'authentication reply', {
      code: 'EAUTH',
      text: 'closed the connection after authentication (wrong user name or password?)',
    });
    if (!a.success) hs.failWith('EAUTH', `node ${hs.where} rejected the user name or password (status ${a.status})`);
  } else if (m.method !== METHOD_NO_AUTH) {
    hs.failWith('EHANDSHAKE', `node ${hs.where} chose authentication method ${m.method}, which was not offered`);
  }
}

// ── the outbound ─────────────────────────────────────────────────────────────

export class Socks5Outbound extends NodeOutbound<Socks5NodeSpec> implements TcpOutbound {
  readonly kind = 'socks5';

  async connect(dst: Destination, ctx: ConnectContext): Promise<Duplex> {
    const socket = await connectNode(this.name, this.spec.host, this.spec.port, this.opts, ctx.signal);
    const hs = new Handshake(
      socket,
      this.name,
      this.where,
      this.opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
      ctx.signal,
    );
    try {
      return await this.handshake(hs, dst);
    } catch (e) {
      if (e instanceof OutboundError) throw e;
      return hs.failWith(
        'EINVAL',
        `cannot ask node ${this.where} for ${formatEndpoint({ address: dst.ip, port: dst.port })}: ${(e as Error).message}`,
      );
    }
  }

  private async handshake(hs: Handshake, dst: Destination): Promise<Duplex> {
    await negotiateSocks5Auth(hs, this.spec);
    const target = destinationAddress(dst);
    hs.write(encodeRequest(CMD_CONNECT, target));
    const r = await hs.read(parseConnectReply, 'CONNECT reply');
    if (r.reply !== 0) {
      const shown =
        target.type === ATYP_DOMAIN
          ? `${target.host}:${target.port}`
          : formatEndpoint({ address: target.host, port: target.port });
      hs.failWith(
        'EREFUSED',
        `node ${this.where} could not connect to ${shown}: ${socksReplyText(r.reply)} (SOCKS reply ${r.reply})`,
      );
    }
    return hs.done();
  }
}
