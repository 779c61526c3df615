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
