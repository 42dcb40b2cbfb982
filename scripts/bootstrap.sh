#!/usr/bin/env bash
# Installs what the embedded local stack needs: Debian's servers and the Toxiproxy server.
# Idempotent: a second run installs nothing. Where it cannot install (not root, not Debian or
# Ubuntu, no Go), it stops and says exactly what to install by hand.
set -euo pipefail

TOXIPROXY_MODULE="github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0"
DEBIAN_PACKAGES=(postgresql-15 redis-server mosquitto nginx-light procps curl)

say() { printf 'bootstrap: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

have_postgres() { ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || command -v postgres >/dev/null; }
missing_servers() {
  have_postgres || echo postgresql-15
  command -v redis-server >/dev/null || echo redis-server
  [ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || echo mosquitto
  [ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || echo nginx-light
}

missing=$(missing_servers | tr '\n' ' ')
if [ -n "${missing// /}" ]; then
  if [ "$(id -u)" != 0 ]; then
    die "missing: ${missing}- install them as root: apt-get install ${DEBIAN_PACKAGES[*]}"
  fi
  if ! command -v apt-get >/dev/null; then
    die "missing: ${missing}- this is not Debian or Ubuntu; install PostgreSQL 15, Redis 7, Mosquitto 2 and nginx with your package manager"
  fi
  say "installing ${DEBIAN_PACKAGES[*]}"
  # Packages must not start their own daemons on the default ports: the stack starts its own.
  policy_rc=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy_rc" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy_rc"; chmod +x "$policy_rc"; created_policy=1
  fi
  trap '[ "$created_policy" = 1 ] && rm -f "$policy_rc"' EXIT
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${DEBIAN_PACKAGES[@]}" >&2
fi

find_toxiproxy() {
  command -v toxiproxy-server 2>/dev/null && return
  for candidate in /usr/local/bin/toxiproxy-server "$HOME/go/bin/toxiproxy-server"; do
    [ -x "$candidate" ] && { echo "$candidate"; return; }
  done
  return 1
}

if ! find_toxiproxy >/dev/null; then
  command -v go >/dev/null || die "toxiproxy-server missing and no Go toolchain to build it: install Go, then run: go install ${TOXIPROXY_MODULE} and copy the 'server' binary to a directory on PATH as toxiproxy-server"
  if [ "$(id -u)" = 0 ]; then dest=/usr/local/bin; else dest="$HOME/go/bin"; fi
  build=$(mktemp -d)
  say "building toxiproxy-server (${TOXIPROXY_MODULE}) into ${dest}"
  (cd "$build" && GOBIN="$build" GOFLAGS=-mod=mod go install "$TOXIPROXY_MODULE") >&2
  mkdir -p "$dest"
  install -m 0755 "$build/server" "$dest/toxiproxy-server"
  rm -rf "$build"
fi

say "ready: $(find_toxiproxy) ($("$(find_toxiproxy)" -version 2>&1 | head -1))"
