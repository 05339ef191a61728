#!/usr/bin/env bash
# Writes a throwaway PKI for the gRPC TLS tests into DIR (openssl CLI, EC P-256 keys, 1 day):
#   ca.pem                 the CA the server trusts for client certificates (and clients for
#                          the server)
#   server.pem server.key  the server, for 127.0.0.1 and localhost, signed by ca
#   client.pem client.key  a good client, signed by ca
#   other-ca.pem           an unrelated CA
#   rogue.pem rogue.key    a client signed by other-ca
#   stray.key              a key that belongs to no certificate here
# Usage: make_test_pki.sh DIR
set -euo pipefail
dir=${1:?usage: make_test_pki.sh DIR}
mkdir -p "$dir"
cd "$dir"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

ca() {  # ca NAME CN
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -subj "/CN=$2" -days 1 -out "$1.pem" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}

leaf() {  # leaf NAME CN CA EXTENSIONS
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
  printf '%s\n' "$4" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -days 1 \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

ca ca "sluice test CA"
ca other-ca "some other CA"
leaf server "sluice test server" ca \
  "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth"
leaf client "sluice test controller" ca "extendedKeyUsage=clientAuth"
leaf rogue "not our controller" other-ca "extendedKeyUsage=clientAuth"
key stray.key
chmod 0600 ./*.key
