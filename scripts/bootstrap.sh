#!/usr/bin/env bash
# Installs what the stack needs. Idempotent: once everything is there it installs nothing.
#   bash scripts/bootstrap.sh            the embedded local stack: Debian's servers and Toxiproxy
#   bash scripts/bootstrap.sh --docker   also a Docker engine (started if none answers) and debootstrap
#   bash scripts/bootstrap.sh --bench    also wrk, the load generator benchmark's raw HTTP client
# Where it cannot install (not root, not Debian or Ubuntu, no Go), it stops and says exactly what
# to install by hand.
set -euo pipefail

TOXIPROXY_VERSION="v2.12.0"
TOXIPROXY_MODULE="github.com/Shopify/toxiproxy/v2/cmd/server@${TOXIPROXY_VERSION}"
TOXIPROXY_CLI_MODULE="github.com/Shopify/toxiproxy/v2/cmd/cli@${TOXIPROXY_VERSION}"
# Every program the local stack, the runbooks (fixtures/runbooks), the backup tools and the framework
# run, as COMMAND:PACKAGE (Debian's). The servers' programs are declared by their service specs
# (ServiceSpec.commands) and read from the catalogue below; this table has the rest. Debian's
# Essential packages (coreutils, grep, sed, tar, ...) are on every machine and not listed.
# tests/test_bootstrap.py derives the commands from the code, the scripts and the runbooks and fails
# on one that is in neither. A guide command a runbook corrects (htop, netstat, iostat) is the
# guide's drift, recorded as such: it need not be installed.
LOCAL_COMMANDS=(
  # the runbooks' commands, and the framework's view of the host
  curl:curl jq:jq top:procps ps:procps pgrep:procps ss:iproute2 iptables:iptables mount:mount umount:mount
  # the HTML report's test opens it headless; `nox -s bench -- --against COMMIT` checks out a worktree
  chromium:chromium git:git
)
# With --docker: the engine, the offline images' base, and the guide's docker-compose.
DOCKER_COMMANDS=(dockerd:docker.io docker:docker.io debootstrap:debootstrap docker-compose:docker-compose)

say() { printf 'bootstrap: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

apt_install() {
  local missing="$1"; shift
  [ "$(id -u)" = 0 ] || die "missing: ${missing}- install them as root: apt-get install $*"
  command -v apt-get >/dev/null || die "missing: ${missing}- this is not Debian or Ubuntu: install them with your package manager"
  say "installing $*"
  # Packages must not start their own daemons: the stack starts its own, on ports of its own.
  local policy_rc=/usr/sbin/policy-rc.d created=0
  if [ ! -e "$policy_rc" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy_rc"; chmod +x "$policy_rc"; created=1
  fi
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2
  [ "$created" = 0 ] || rm -f "$policy_rc"
}

have() {  # have COMMAND: on PATH, or where Debian keeps servers off PATH
  command -v "$1" >/dev/null 2>&1 && return
  for dir in /usr/sbin /sbin /usr/lib/postgresql/*/bin; do [ -x "$dir/$1" ] && return; done
  return 1
}
missing_packages() {  # missing_packages COMMAND:PACKAGE ...: the packages of the commands not installed
  local entry seen=" "
  for entry in "$@"; do
    have "${entry%%:*}" || case "$seen" in *" ${entry#*:} "*) ;; *) seen+="${entry#*:} " ;; esac
  done
  printf '%s' "${seen# }"
}

# --- the local stack's servers and every program its scenarios, runbooks and tools run -------
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command -v python3 >/dev/null || die "python3 missing: install it (apt-get install python3), then run this again"
# the catalogue imports only the standard library (-S: nothing pip installed is needed yet)
mapfile -t SERVICE_COMMANDS < <(cd "$ROOT" && python3 -S -m fulsk_chaos.services --commands)
[ "${#SERVICE_COMMANDS[@]}" -gt 0 ] || die "the service catalogue declared no commands: python3 -S -m fulsk_chaos.services --commands"
missing=$(missing_packages "${SERVICE_COMMANDS[@]}" "${LOCAL_COMMANDS[@]}")
# shellcheck disable=SC2086 - one word per package
[ -z "$missing" ] || apt_install "$missing" $missing

find_binary() {  # find_binary NAME: on PATH, or where go_install puts it
  command -v "$1" 2>/dev/null && return
  for candidate in "/usr/local/bin/$1" "$HOME/go/bin/$1"; do
    [ -x "$candidate" ] && { echo "$candidate"; return; }
  done
  return 1
}
go_install() {  # go_install MODULE BUILT_NAME INSTALLED_NAME
  command -v go >/dev/null || die "$3 missing and no Go toolchain to build it: install Go, then run: go install $1 and copy the '$2' binary to a directory on PATH as $3"
  if [ "$(id -u)" = 0 ]; then dest=/usr/local/bin; else dest="$HOME/go/bin"; fi
  build=$(mktemp -d)
  say "building $3 ($1) into ${dest}"
  (cd "$build" && GOBIN="$build" GOFLAGS=-mod=mod go install "$1") >&2
  mkdir -p "$dest"
  install -m 0755 "$build/$2" "$dest/$3"
  rm -rf "$build"
}
find_binary toxiproxy-server >/dev/null || go_install "$TOXIPROXY_MODULE" server toxiproxy-server
find_binary toxiproxy-cli >/dev/null || go_install "$TOXIPROXY_CLI_MODULE" cli toxiproxy-cli
say "local stack ready (toxiproxy: $(find_binary toxiproxy-server), $(find_binary toxiproxy-cli))"

if [ "${1:-}" = "--bench" ]; then  # the load generator benchmark's raw HTTP client, a C tool
  command -v wrk >/dev/null || apt_install "wrk " wrk
  say "benchmark tools ready (wrk: $(command -v wrk))"
  exit 0
fi
[ "${1:-}" = "--docker" ] || exit 0

# --- the Docker engine -----------------------------------------------------------------------
missing=$(missing_packages "${DOCKER_COMMANDS[@]}")
# runbooks run `docker-compose -f docker-compose.prod.yml ...`: Compose v2 where it exists, else Debian's v1
if docker compose version >/dev/null 2>&1; then missing=${missing/docker-compose/}; fi
# shellcheck disable=SC2086
[ -z "${missing// /}" ] || apt_install "$missing" $missing

if ! docker info >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || die "no Docker engine answers and only root can start one: start dockerd (e.g. systemctl start docker)"
  log=/var/log/fulsk-chaos-dockerd.log
  say "starting dockerd (log: $log)"
  setsid nohup dockerd >"$log" 2>&1 < /dev/null &
  for _ in $(seq 1 120); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || die "dockerd did not answer within 60 s; its log ends with: $(tail -5 "$log")"
fi
say "docker engine ready ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
