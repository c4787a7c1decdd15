#!/usr/bin/env bash
# The Debian packages the test suite drives, installed when missing (a no-op when present):
#   chromium    /usr/bin/chromium: the MLflow UI browser test (Playwright, no browser download)
#   postgresql  /usr/lib/postgresql/*/bin/initdb: a throwaway PostgreSQL server for Optuna's RDB
# apt-get install, then apt-get update and install again if that failed (a fresh image has no
# package lists); sudo only when not root. When it cannot install, it says so in one line and
# exits 0: the tests that need a package then fail with their own one-line message.
set -euo pipefail

need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
[ "${#need[@]}" -eq 0 ] && exit 0

cannot() {
  echo "system-deps: could not install ${need[*]} ($1); install them yourself (Debian: apt-get install ${need[*]}), else the tests that need them fail" >&2
  exit 0
}

command -v apt-get >/dev/null 2>&1 || cannot "no apt-get: not a Debian-like system"
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || cannot "not root and no sudo"
  SUDO=(sudo)
fi
log="$(mktemp -t paretrain-system-deps.XXXXXX.log)"
apt() { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@" >>"$log" 2>&1; }
echo "system-deps: installing ${need[*]} with apt-get (log: $log)"
if ! apt install -y -q "${need[@]}"; then
  { apt update -q && apt install -y -q "${need[@]}"; } || cannot "apt-get failed; see $log"
fi
rm -f "$log"
echo "system-deps: installed ${need[*]}"
