#!/usr/bin/env bash
# Installs the Debian packages k0x's build, staging and tests use. Idempotent; needs root.
#   scripts/setup-packages.sh           what the amd64 build and the tests need
#   scripts/setup-packages.sh --cross   also the cross C toolchains and libseccomp of arm64 and
#                                       armhf (runc's and flannel's cgo builds for
#                                       `embedded-bins/build --arch arm64|arm`) and qemu-user to
#                                       run the results
set -euo pipefail

cross=false
case "${1:-}" in
  "") ;;
  --cross) cross=true ;;
  *) echo "scripts/setup-packages.sh: unknown argument ${1} (use --cross, or nothing)" >&2; exit 2 ;;
esac

packages=(
  etcd-server etcd-client          # real etcd for the controller and tests
  containerd runc                  # real container runtime
  containernetworking-plugins      # bridge, host-local, loopback, portmap
  iproute2 iptables                # network namespaces, veth, CNI NAT
  openssl                          # certificate checks in tests
  busybox-static                   # a local image for container tests (no registry)
  zstd tar                         # payload checks and benchmarks
  systemd                          # systemd-analyze verify for the unit templates
  build-essential pkg-config git   # crates that compile C (zstd-sys, ring); cgo for runc
  libseccomp-dev                   # runc with seccomp, linked static (embedded-bins/build)
  python3                          # embedded-bins/wrap reads upstream go.mod files
  file                             # tests check that binaries are static
  procps psmisc util-linux         # ps, pkill, findmnt in tests
  time                             # /usr/bin/time: peak RSS in scripts/bench-assets.sh
  curl ca-certificates             # embedded-bins/stage --online downloads
)

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/setup-packages.sh: needs root to install packages (run it with sudo)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
if $cross; then
  dpkg --add-architecture arm64
  dpkg --add-architecture armhf
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends crossbuild-essential-arm64 crossbuild-essential-armhf \
    libseccomp-dev:arm64 libseccomp-dev:armhf qemu-user-static >/dev/null
fi
# kubectl: use the host's if it has one, otherwise Debian's kubernetes-client.
if ! command -v kubectl >/dev/null 2>&1; then
  apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null
fi
if ! command -v go >/dev/null 2>&1; then
  echo "scripts/setup-packages.sh: no Go toolchain (go) on PATH; the components are built from source with Go 1.24 or later" >&2
  exit 1
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "scripts/setup-packages.sh: no Rust toolchain (cargo) on PATH; install one with rustup and rerun" >&2
  exit 1
fi
echo "packages ready"
