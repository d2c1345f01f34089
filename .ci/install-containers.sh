#!/usr/bin/env bash
# Install what the container tests need (harness/podman.py and harness/provisioning.py):
# rootful podman with runc, buildah for `podman build`, debootstrap for the
# Python base image (no container registry is reachable), and a network stack
# for `-p 127.0.0.1:PORT:8000`.
#
# Idempotent and quiet: installs only what is missing, so CI reruns cost a
# dpkg query. Debian/Ubuntu only; needs root (or passwordless sudo).
set -euo pipefail

packages=(
  podman
  buildah                   # podman build
  runc                      # crun rejects hybrid cgroup v1/v2 hosts; tests use runc
  conmon                    # container monitor (a podman dependency, listed for clarity)
  debootstrap               # builds the python base image from apt's mirror
  debian-archive-keyring    # lets debootstrap verify bookworm on Ubuntu hosts too
  netavark                  # network stack podman 4+ prefers (bridge, NAT, -p 127.0.0.1:P:8000)
  aardvark-dns              # name resolution on user-created networks (multi-container tests)
  iptables                  # netavark programs NAT/port-forwarding rules with it
  uidmap                    # newuidmap/newgidmap: harmless for root, needed rootless
  catatonit                 # the pause process of pods: `podman kube play` (tests/container/test_container.py)
  tar
)

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

sudo=()
if ((EUID != 0)); then
  sudo=(sudo)
fi

echo "install-containers: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

# --no-install-recommends: podman recommends fuse-overlayfs, slirp4netns,
# dbus-user-session, catatonit... none of which rootful podman on a native
# overlay filesystem needs. (apt still pulls containernetworking-plugins to
# satisfy containers-common; the tests also work with that CNI stack alone,
# see COPIER_FLASK_PODMAN_NETWORK_BACKEND in harness/podman.py.)
install() {
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1
}

# apt-get update is the slow part: skip it while the indexes are less than a
# day old, and fall back to it when installing from them fails (stale lists).
fresh_lists="$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 -print -quit 2>/dev/null || true)"
if [[ -n "$fresh_lists" ]] && install; then
  exit 0
fi
"${sudo[@]}" apt-get update -qq >/dev/null
if ! install; then
  cat "$log" >&2 # only show apt's chatter when it failed
  exit 1
fi
