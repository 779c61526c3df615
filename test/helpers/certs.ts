/** Arguments of `openssl req` for a throwaway self-signed P-256 certificate. */
export function selfSignedCertArgs(o: {
  names: readonly string[];
  keyFile: string;
  certFile: string;
  days?: number;
  cn?: string;
}): string[] {
  const san = o.names.map((n) => (/^[\d.]+$|:/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
  return [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-days',
    String(o.days ?? 2),
    '-subj',
    `/CN=${o.cn ?? o.names[0]}`,
    ...(o.names.length ? ['-addext', `subjectAltName=${san}`] : []),
    '-keyout',
    o.keyFile,
    '-out',
    o.certFile,
  ];
}
