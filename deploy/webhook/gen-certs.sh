#!/usr/bin/env bash
# Make a private CA and a serving certificate for the webhook Service, store them as the
# Secret the Deployment mounts, and put the CA into the MutatingWebhookConfiguration.
#
#   ./gen-certs.sh                 # kubectl: create/replace the Secret, patch caBundle
#   ./gen-certs.sh --out DIR       # only write ca.crt, tls.crt, tls.key to DIR
#
# Re-run before the certificate expires (DAYS, default 365); the webhook re-reads the
# mounted files within a minute of the Secret changing, no restart needed. For automatic
# renewal use the cert-manager overlay instead (deploy/webhook/cert-manager).
set -euo pipefail

NAMESPACE=${NAMESPACE:-tranproxy-system}
SERVICE=${SERVICE:-tranproxy-webhook}
SECRET=${SECRET:-tranproxy-webhook-tls}
WEBHOOK_CONFIG=${WEBHOOK_CONFIG:-tranproxy-sidecar-injector}
DAYS=${DAYS:-365}
OUT=""
if [ "${1:-}" = "--out" ]; then OUT=${2:?--out needs a directory}; fi

dir=${OUT:-$(mktemp -d)}
mkdir -p "$dir"
[ -n "$OUT" ] || trap 'rm -rf "$dir"' EXIT

host="$SERVICE.$NAMESPACE.svc"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days "$DAYS" \
  -keyout "$dir/ca.key" -out "$dir/ca.crt" -subj "/CN=tranproxy-webhook-ca" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$dir/tls.key" -out "$dir/tls.csr" -subj "/CN=$host" 2>/dev/null
printf 'subjectAltName=DNS:%s,DNS:%s.%s,DNS:%s.cluster.local\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n' \
  "$host" "$SERVICE" "$NAMESPACE" "$host" > "$dir/ext.cnf"
openssl x509 -req -in "$dir/tls.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
  -days "$DAYS" -out "$dir/tls.crt" -extfile "$dir/ext.cnf" 2>/dev/null
rm -f "$dir/tls.csr" "$dir/ext.cnf" "$dir/ca.srl"
openssl verify -CAfile "$dir/ca.crt" "$dir/tls.crt" >/dev/null

if [ -n "$OUT" ]; then
  rm -f "$dir/ca.key" # nothing signs with it again; a new run makes a new CA
  echo "wrote $dir/ca.crt $dir/tls.crt $dir/tls.key (for $host)"
  exit 0
fi

kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$NAMESPACE" create secret tls "$SECRET" --cert="$dir/tls.crt" --key="$dir/tls.key" \
  --dry-run=client -o yaml | kubectl apply -f -
ca=$(base64 < "$dir/ca.crt" | tr -d '\n')
if kubectl get mutatingwebhookconfiguration "$WEBHOOK_CONFIG" >/dev/null 2>&1; then
  kubectl patch mutatingwebhookconfiguration "$WEBHOOK_CONFIG" --type=json \
    -p "[{\"op\":\"add\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"$ca\"}]"
else
  echo "MutatingWebhookConfiguration $WEBHOOK_CONFIG not found: apply deploy/webhook first, then run this again" >&2
  exit 1
fi
echo "secret $NAMESPACE/$SECRET and caBundle of $WEBHOOK_CONFIG updated (valid $DAYS days)"
