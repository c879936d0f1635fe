#!/usr/bin/env bash
# Installs the Debian packages the project runs on the host, if any are
# missing. On a machine without apt it names them and stops.
set -euo pipefail

packages=(
  qemu-system-x86 qemu-utils xorriso openssh-client
  mmdebstrap extlinux syslinux-common fdisk e2fsprogs
  cloud-init shellcheck packer python3-venv ca-certificates
  libvirt-clients libxml2-utils openssl chromium
  postgresql postgresql-client
)

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null \
      | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done
if (( ${#missing[@]} == 0 )); then
  exit 0
fi

if ! command -v apt-get >/dev/null; then
  echo "Install these packages with your package manager, then run make" \
    "again: ${missing[*]}" >&2
  exit 1
fi

sudo=()
if (( EUID != 0 )); then
  sudo=(sudo)
fi

echo "==> Installing Debian packages: ${missing[*]}"
"${sudo[@]}" apt-get update -q
if [[ " ${missing[*]} " == *" packer "* ]] \
    && ! apt-cache show packer >/dev/null 2>&1; then
  echo "Packer is not in this system's package archive: install it from" \
    "HashiCorp's apt repository (developer.hashicorp.com/packer/install)," \
    "then run make again." >&2
  exit 1
fi
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q \
  --no-install-recommends "${missing[@]}"
