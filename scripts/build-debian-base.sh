#!/usr/bin/env bash
# Build a minimal Debian cloud-style base image (compressed qcow2) from
# Debian packages: MBR disk, one ext4 root partition, extlinux, the full
# linux-image-amd64 kernel (so the image also boots in VirtualBox) and
# cloud-init configured for NoCloud/ConfigDrive seeds.
#
# Usage: build-debian-base.sh OUTPUT.qcow2
# Environment (defaults):
#   DISK_SIZE               4G
#   SUITE                   bookworm
#   DEBIAN_MIRROR           http://deb.debian.org/debian
#   DEBIAN_SECURITY_MIRROR  http://deb.debian.org/debian-security
# Needs root (loop device, mount). Also writes/updates SHA256SUMS next to
# OUTPUT.
set -euo pipefail

DISK_SIZE=${DISK_SIZE:-4G}
SUITE=${SUITE:-bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
: "${DEBIAN_SECURITY_MIRROR:=http://deb.debian.org/debian-security}"

MBR_BIN=/usr/lib/syslinux/mbr/mbr.bin
# Debian keeps these in sbin, which a non-login root shell may lack.
PATH=$PATH:/usr/sbin:/sbin

PACKAGES=(
  systemd-sysv udev dbus linux-image-amd64 initramfs-tools extlinux
  cloud-init cloud-guest-utils fdisk e2fsprogs python3
  openssh-server openssh-sftp-server sudo
  ifupdown isc-dhcp-client iproute2 netbase ca-certificates
  locales procps nftables
)

# Filled in as resources are created, so cleanup knows what to undo.
work='' mnt='' loop=''

log() { printf '%s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  log "usage: ${0##*/} OUTPUT.qcow2"
  log "env: DISK_SIZE=$DISK_SIZE SUITE=$SUITE DEBIAN_MIRROR=$DEBIAN_MIRROR"
  exit 2
}

check_tools() {
  local -A pkg=(
    [mmdebstrap]=mmdebstrap [qemu-img]=qemu-utils [sfdisk]=fdisk
    [mkfs.ext4]=e2fsprogs [e2fsck]=e2fsprogs [extlinux]=extlinux
    [losetup]=mount [mount]=mount [umount]=mount [fstrim]=util-linux
    [mountpoint]=util-linux [sha256sum]=coreutils [numfmt]=coreutils
    [usermod]=passwd
  )
  local missing=() pkgs=() tool
  for tool in "${!pkg[@]}"; do
    if ! command -v "$tool" >/dev/null; then
      missing+=("$tool") pkgs+=("${pkg[$tool]}")
    fi
  done
  if [[ ! -r $MBR_BIN ]]; then
    missing+=("$MBR_BIN") pkgs+=(syslinux-common)
  fi
  if ((${#missing[@]})); then
    die "missing ${missing[*]}; install: apt-get install" \
      "$(printf '%s\n' "${pkgs[@]}" | sort -u | paste -sd ' ')"
  fi
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  # mmdebstrap normally unmounts its /proc, /sys and /dev itself, but an
  # interrupt can leave them behind, hence the recursive unmount.
  if [[ -n $mnt ]] && mountpoint -q "$mnt"; then
    umount -R "$mnt" 2>/dev/null || umount -R -l "$mnt" || true
  fi
  if [[ -n $loop ]]; then
    losetup -d "$loop" 2>/dev/null || true
  fi
  # --one-file-system: never delete into a root fs that failed to unmount.
  if [[ -n $work && -d $work ]]; then
    rm -rf --one-file-system "$work" || true
  fi
  ((rc == 0)) || log "==> failed (exit $rc); temporary files removed"
  exit "$rc"
}

# Runs a chatty tool silently, showing its output only if it fails.
quiet() {
  local output
  if ! output=$("$@" 2>&1); then
    log "$output"
    return 1
  fi
}

step() {
  local name=$1 start=$SECONDS
  shift
  "$@"
  log "==> $name ($((SECONDS - start)) s)"
}

make_disk() {
  truncate -s "$DISK_SIZE" "$raw"
  local bytes sectors
  bytes=$(stat -c %s "$raw")
  ((bytes % 512 == 0 && bytes >= 1024 * 1024 * 1024)) ||
    die "DISK_SIZE must be a multiple of 512 bytes and at least 1G"
  sectors=$((bytes / 512))
  printf 'label: dos\nstart=2048, size=%d, type=83, bootable\n' \
    $((sectors - 2048)) | sfdisk --quiet "$raw"
  # An offset loop device avoids depending on partition scanning, which
  # often does not create /dev/loopNpM nodes inside containers.
  loop=$(losetup --find --show --offset $((2048 * 512)) \
    --sizelimit $(((sectors - 2048) * 512)) "$raw")
  # extlinux cannot read 64bit, metadata_csum_seed or orphan_file.
  mkfs.ext4 -q -L root -U "$uuid" \
    -O ^64bit,^metadata_csum_seed,^orphan_file "$loop"
  mkdir "$mnt"
  mount "$loop" "$mnt"
}

make_rootfs() {
  local IFS=,
  # initramfs-tools probes the root device to decide which fsck to include;
  # that fails in a chroot, leaving the root fs unchecked at boot. Naming
  # the type before the kernel is installed avoids the probe.
  # shellcheck disable=SC2016 # $1 is expanded by mmdebstrap's hook shell
  mmdebstrap --variant=minbase --include="${PACKAGES[*]}" \
    --setup-hook='mkdir -p "$1/etc/initramfs-tools/conf.d"' \
    --setup-hook='echo FSTYPE=ext4 >"$1/etc/initramfs-tools/conf.d/fstype"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    "$SUITE" "$mnt" \
    "deb $DEBIAN_MIRROR $SUITE main" \
    "deb $DEBIAN_MIRROR $SUITE-updates main" \
    "deb $DEBIAN_SECURITY_MIRROR $SUITE-security main"
}

configure_rootfs() {
  printf 'UUID=%s / ext4 errors=remount-ro 0 1\n' "$uuid" >"$mnt/etc/fstab"
  # mmdebstrap copies the build host's hostname and resolv.conf; the
  # guest gets its own from cloud-init and dhclient.
  rm -f "$mnt/etc/hostname" "$mnt/etc/resolv.conf"
  echo debian >"$mnt/etc/hostname"
  cat >"$mnt/etc/hosts" <<'EOF'
127.0.0.1 localhost
::1 localhost ip6-localhost ip6-loopback
ff02::1 ip6-allnodes
ff02::2 ip6-allrouters
EOF
  # cloud-init's ENI renderer writes interfaces.d/50-cloud-init and only
  # counts as available when this file exists.
  cat >"$mnt/etc/network/interfaces" <<'EOF'
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback
EOF
  # A preset LANG stops cloud-init's locale module from running locale-gen
  # for en_US.UTF-8 on every first boot; C.UTF-8 needs no generation.
  echo LANG=C.UTF-8 >"$mnt/etc/default/locale"
  cat >"$mnt/etc/cloud/cloud.cfg.d/90_base_image.cfg" <<'EOF'
# Probing EC2/OpenStack/... metadata URLs that do not exist stalls boot.
datasource_list: [NoCloud, ConfigDrive, None]
# Keeps the cloud-init hostname resolvable, which sudo looks up.
manage_etc_hosts: true
# Running without a seed is intended (see ds-identify.cfg), not a bug.
warnings:
  dsid_missing_source: off
# Bookworm's sshd no longer loads DSA keys; generating one only slows
# first boot.
ssh_genkeytypes: [rsa, ecdsa, ed25519]
# The image boots with extlinux; there is no grub-pc to preseed.
grub_dpkg:
  enabled: false
system_info:
  network:
    renderers: [eni]
EOF
  # By default ds-identify disables cloud-init when no seed is found; the
  # image would then boot without SSH host keys and sshd would fail.
  # notfound=enabled runs it with DataSourceNone instead.
  echo 'policy: search,found=all,maybe=none,notfound=enabled' \
    >"$mnt/etc/cloud/ds-identify.cfg"
  # mmdebstrap's no-recommends default would surprise image users.
  rm -f "$mnt/etc/apt/apt.conf.d/00mmdebstrap"
  # No identity baked in: cloud-init/systemd create these on first boot.
  truncate -s 0 "$mnt/etc/machine-id"
  rm -f "$mnt"/etc/ssh/ssh_host_*
  rm -rf "$mnt/var/lib/cloud"
  usermod --root "$mnt" --lock root
  rm -rf "$mnt"/var/lib/apt/lists/* "$mnt"/var/cache/apt/*
  rm -rf "$mnt"/tmp/* "$mnt"/var/tmp/*
  find "$mnt/var/log" -type f -delete
}

install_bootloader() {
  mkdir -p "$mnt/boot/extlinux"
  # /vmlinuz and /initrd.img are symlinks the kernel packages keep
  # current, so this file survives kernel upgrades unchanged.
  # ttyS0 comes last so it is /dev/console and gets the boot messages.
  cat >"$mnt/boot/extlinux/extlinux.conf" <<EOF
DEFAULT debian
PROMPT 0
TIMEOUT 0

LABEL debian
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND root=UUID=$uuid ro console=tty0 console=ttyS0,115200n8
EOF
  quiet extlinux --install "$mnt/boot/extlinux"
  dd if="$MBR_BIN" of="$raw" bs=440 count=1 conv=notrunc status=none
}

finish_fs() {
  # Hands freed blocks back as holes, so qemu-img skips them.
  fstrim "$mnt"
  umount "$mnt"
  quiet e2fsck -f -n "$loop"
  losetup -d "$loop"
  loop=''
}

to_qcow2() {
  qemu-img convert -c -O qcow2 "$raw" "$work/image.qcow2"
}

write_checksum() {
  local sum name=${out##*/} sums=${out%/*}/SHA256SUMS
  sum=$(sha256sum <"$work/image.qcow2")
  # Keep lines for other files, so several images can share a directory.
  if [[ -f $sums ]]; then
    awk -v n="$name" '$2 != n && $2 != "*" n' "$sums" >"$work/SHA256SUMS"
  fi
  printf '%s  %s\n' "${sum%% *}" "$name" >>"$work/SHA256SUMS"
}

main() {
  (($# == 1)) || usage
  [[ $1 != -* ]] || usage
  check_tools
  ((EUID == 0)) || die "must run as root (loop devices and mounts)"

  out=$(realpath -m -- "$1")
  mkdir -p "${out%/*}"
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
  # Same directory as the output so the final mv is an atomic rename.
  work=$(mktemp -d "${out%/*}/.${out##*/}.tmp.XXXXXX")
  # apt downloads as _apt, which cannot enter mktemp's 0700 directory.
  chmod 755 "$work"
  raw=$work/disk.raw
  mnt=$work/root
  uuid=$(cat /proc/sys/kernel/random/uuid)

  local start=$SECONDS
  step disk make_disk
  step rootfs make_rootfs
  step configure configure_rootfs
  step bootloader install_bootloader
  step unmount finish_fs
  step qcow2 to_qcow2
  step checksum write_checksum
  mv "$work/image.qcow2" "$out"
  mv "$work/SHA256SUMS" "${out%/*}/SHA256SUMS"
  log "==> total ($((SECONDS - start)) s)"

  local virt file
  virt=$(stat -c %s "$raw" | numfmt --to=iec)
  file=$(stat -c %s "$out" | numfmt --to=iec)
  log "==> $out: virtual size $virt, file size $file"
}

main "$@"
