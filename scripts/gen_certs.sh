#!/usr/bin/env bash
# Generates the certificates Ember's mtls/tls modes need (docs/security.md), with the
# openssl command-line tool. Keys are written unencrypted (mode 600): keep OUT_DIR private
# and never commit it.
#
#   scripts/gen_certs.sh OUT_DIR [--sites N] [--server NAME] [--hosts "localhost 127.0.0.1"]
#                                [--days DAYS] [--project NAME] [--key rsa|ec]
#
# OUT_DIR/
#   rootCA.pem rootCA.key          the project's root CA (CN = project name)
#   server.crt server.key          CN = server name, SAN = the --hosts names/addresses,
#                                  extendedKeyUsage serverAuth + clientAuth
#   site-1.crt site-1.key ...      CN = site-N, extendedKeyUsage clientAuth
#   other/rootCA.pem other/...     a second, unrelated CA with its own server and site-1
#                                  certificates (tests use it to prove foreign certs fail)
#
# Keys are RSA-2048 (as FLARE's provisioner) or, with --key ec, P-256 (much faster to
# make; the tests use it); certificates are SHA-256, valid 360 days.
set -euo pipefail

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }

out=""
sites=2
server_name="server"
hosts="localhost 127.0.0.1"
days=360
project="ember"
key="rsa"
while [ $# -gt 0 ]; do
  case "$1" in
    --sites) sites="$2"; shift 2 ;;
    --server) server_name="$2"; shift 2 ;;
    --hosts) hosts="$2"; shift 2 ;;
    --days) days="$2"; shift 2 ;;
    --project) project="$2"; shift 2 ;;
    --key) key="$2"; shift 2 ;;
    -h|--help) usage 0 ;;
    -*) echo "gen_certs: unknown option $1" >&2; usage ;;
    *) [ -z "$out" ] || usage; out="$1"; shift ;;
  esac
done
[ -n "$out" ] || usage
case "$sites" in ''|*[!0-9]*) echo "gen_certs: --sites needs a number" >&2; exit 2 ;; esac
case "$key" in
  rsa) newkey=(-newkey rsa:2048); leaf_usage="digitalSignature,keyEncipherment" ;;
  ec) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256); leaf_usage="digitalSignature" ;;
  *) echo "gen_certs: --key must be rsa or ec" >&2; exit 2 ;;
esac
command -v openssl >/dev/null || { echo "gen_certs: the openssl tool is missing (scripts/deps.sh installs it)" >&2; exit 1; }

umask 077
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# subject_alt_names "localhost 127.0.0.1" -> "DNS:localhost,IP:127.0.0.1"
subject_alt_names() {
  local san="" h
  for h in $1; do
    if [[ "$h" =~ ^[0-9.]+$ || "$h" == *:* ]]; then san+="${san:+,}IP:$h"; else san+="${san:+,}DNS:$h"; fi
  done
  echo "$san"
}

# make_ca DIR CN
make_ca() {
  openssl req -x509 -new "${newkey[@]}" -nodes -sha256 -days "$days" \
    -keyout "$1/rootCA.key" -out "$1/rootCA.pem" -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
}

# make_leaf CA_DIR NAME CN EXTENDED_KEY_USAGE [SAN]
make_leaf() {
  local dir="$1" name="$2" cn="$3" eku="$4" san="${5:-}"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,$leaf_usage"
    echo "extendedKeyUsage=$eku"
    [ -z "$san" ] || echo "subjectAltName=$san"
  } >"$work/ext"
  openssl req -new "${newkey[@]}" -nodes -sha256 -keyout "$dir/$name.key" \
    -out "$work/$name.csr" -subj "/CN=$cn" 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
  openssl x509 -req -in "$work/$name.csr" -CA "$dir/rootCA.pem" -CAkey "$dir/rootCA.key" \
    -CAcreateserial -CAserial "$work/serial" -days "$days" -sha256 -extfile "$work/ext" \
    -out "$dir/$name.crt" 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
}

san="$(subject_alt_names "$hosts")"
make_ca "$out" "$project"
make_leaf "$out" server "$server_name" "serverAuth,clientAuth" "$san"
for i in $(seq 1 "$sites"); do
  make_leaf "$out" "site-$i" "site-$i" clientAuth
done

mkdir -p "$out/other"
make_ca "$out/other" "$project-other"
make_leaf "$out/other" server "$server_name" "serverAuth,clientAuth" "$san"
make_leaf "$out/other" site-1 site-1 clientAuth

chmod 600 "$out"/*.key "$out"/other/*.key
echo "gen_certs: wrote $out (root CA, $server_name, site-1..site-$sites, other/)"
