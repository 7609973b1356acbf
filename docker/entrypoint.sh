#!/bin/sh
# The sidecar image's entrypoint.
#
#   serve [ARGS...]   (default) serve on tcp://0.0.0.0:$JAXBRIDGE_PORT with CURVE:
#                     the key pair $JAXBRIDGE_KEYS/server.key_secret, the client
#                     public keys in $JAXBRIDGE_KEYS/clients/ (or the paths in
#                     JAXBRIDGE_SERVER_KEY / JAXBRIDGE_AUTHORIZED_KEYS). Extra
#                     ARGS go to `serve` (e.g. --allow mypkg).
#   init-keys [CLIENT...]  make the keys above if missing, plus a pair for each
#                     client (default: app) in $JAXBRIDGE_KEYS/CLIENT/ with its
#                     public key authorized; for the Compose dev stack.
#   keygen|doctor ... the sidecar's own commands.
#   anything else     run as a command.
set -eu

keys="${JAXBRIDGE_KEYS:-/keys}"
run="${JAXBRIDGE_RUN:-/tmp/jaxbridge}"
sidecar() { exec python -m jaxbridge_sidecar "$@"; }

cmd="${1:-serve}"
[ $# -gt 0 ] && shift
case "$cmd" in
  serve)
    secret="${JAXBRIDGE_SERVER_KEY:-$keys/server.key_secret}"
    authorized="${JAXBRIDGE_AUTHORIZED_KEYS:-$keys/clients}"
    for f in "$secret" "$authorized"; do
      if [ ! -r "$f" ]; then
        echo "jaxbridge: $f is missing or unreadable by uid $(id -u). Make keys with" >&2
        echo "  docker run --rm -v KEYS_DIR:/keys IMAGE init-keys     (or python -m jaxbridge_sidecar keygen)" >&2
        echo "and mount them at $keys (the sidecar refuses a non-loopback bind without CURVE)." >&2
        exit 2
      fi
    done
    # The health check speaks the protocol over CURVE too: it gets a pair of
    # its own, made at each start and valid only inside this container.
    umask 077
    rm -rf "$run" && mkdir -p "$run/health"
    python -c '
import sys, zmq
public, secret = (k.decode() for k in zmq.curve_keypair())
cert = "metadata\ncurve\n    public-key = \"%s\"\n" % public
open(sys.argv[1] + "/health.key_secret", "w").write(cert + "    secret-key = \"%s\"\n" % secret)
open(sys.argv[1] + "/health.key", "w").write(cert)
' "$run/health"
    grep 'public-key' "$secret" > "$run/server.key"
    sidecar serve --endpoint "tcp://0.0.0.0:${JAXBRIDGE_PORT:-5555}" --curve-secret-key "$secret" \
      --authorized-keys "$authorized" --authorized-keys "$run/health/health.key" "$@"
    ;;
  init-keys)
    [ $# -eq 0 ] && set -- app
    umask 077
    mkdir -p "$keys/clients"
    if [ ! -f "$keys/server.key_secret" ]; then
      python -m jaxbridge_sidecar keygen --out "$keys" --name server
    fi
    for c in "$@"; do
      if [ ! -f "$keys/$c/$c.key_secret" ]; then
        python -m jaxbridge_sidecar keygen --out "$keys/$c" --name "$c"
      fi
      cp "$keys/$c/$c.key" "$keys/clients/$c.key"
      chmod 0644 "$keys/clients/$c.key" "$keys/server.key"
    done
    chmod 0755 "$keys" "$keys/clients"
    echo "jaxbridge: keys ready in $keys: server.key (give it to clients), clients/ ($(ls "$keys/clients" | tr '\n' ' '))"
    ;;
  keygen|doctor)
    sidecar "$cmd" "$@"
    ;;
  *)
    exec "$cmd" "$@"
    ;;
esac
