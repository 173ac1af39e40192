#!/usr/bin/env bash
# Debian packages the tests use, installed only when missing: Chromium for the browser test
# of the MLflow UI (Playwright drives it; never downloads one) and PostgreSQL's server
# binaries for the distributed test (a throwaway cluster on 127.0.0.1).
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing+=(postgresql)
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install ${missing[*]} with your package manager (the browser and PostgreSQL tests need them)" >&2
  exit 0
fi
sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
$sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get update -q
$sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
