// Typed errors. Every error a user can meet carries a message that names the problem
// and the fix; the CLI prints `tranproxy: <message>` and exits with `exitCode`.

export class TranproxyError extends Error {
  /** Process exit status when this error reaches the CLI. */
  readonly exitCode: number = 1;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Bad flags, bad values, bad config: exit status 2. */
export class UsageError extends TranproxyError {
  override readonly exitCode = 2;
}

/** A system tool (nft, iptables-restore, ip, sysctl…) is not installed. */
export class ToolMissingError extends TranproxyError {
  constructor(
    readonly tool: string,
    readonly debianPackage: string,
  ) {
    super(`'${tool}' not found: install it (apt-get install ${debianPackage}) or choose another backend`);
  }
}

/** A system tool ran and failed. */
export class ToolFailedError extends TranproxyError {
  constructor(
    readonly tool: string,
    readonly args: readonly string[],
    readonly status: number | null,
    readonly stderr: string,
  ) {
    super(`${tool} ${args.join(' ')} failed (exit ${status ?? 'signal'}): ${stderr.trim() || 'no output'}`);
  }
}

/** Missing privileges (CAP_NET_ADMIN, root). */
export class PermissionError extends TranproxyError {}

/** A syscall made through the FFI layer failed. */
export class SyscallError extends TranproxyError {
  constructor(
    readonly syscall: string,
    readonly errno: number,
    readonly code: string,
    detail = '',
  ) {
    super(`${syscall} failed: ${code} (errno ${errno})${detail ? `: ${detail}` : ''}`);
  }
}

/**
 * Why a flow could not be carried (connect failed, refused by a rule, the outbound cannot).
 * `code` is short and stable: log lines (`error=`) and metric labels read it, never the
 * class. `outbound` names the outbound that failed, when one did.
 */
export class FlowError extends TranproxyError {
  constructor(
    readonly code: string,
    message: string,
    readonly outbound?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Stable codes of flow errors tranproxy makes itself (outbounds also pass on errno names: ECONNREFUSED, …). */
export const FLOW_CODES = {
  /** A rule (or a group's current member) routes the flow to `reject`. */
  rejected: 'EREJECTED',
  /** A route names an outbound that does not exist. */
  noOutbound: 'ENOOUTBOUND',
  /** A fake-IP domain routed direct has no real address. */
  notFound: 'ENOTFOUND',
} as const;

/** The stable code of any error on the connection path: FlowError's, else errno's, else 'ERROR'. */
export function errorCode(e: unknown): string {
  if (e instanceof FlowError) return e.code;
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'ERROR';
}
