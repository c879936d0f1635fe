#!/usr/bin/env bash
# Makes the image safe to clone: nothing that identifies this build or
# machine stays in it, and free space is released so the disk compresses.
# The build user itself is removed by the shutdown command, after this
# session ends.
set -euo pipefail

step() {
  echo "==> $*"
}

step "removing cloud-init state and logs, so the next boot is a first boot"
cloud-init clean --logs --seed

step "emptying machine-id; systemd writes a new one at each clone's first boot"
truncate -s 0 /etc/machine-id
if [[ -d /var/lib/dbus ]]; then
  ln -sf /etc/machine-id /var/lib/dbus/machine-id
fi

step "removing SSH host keys; cloud-init generates new ones at first boot"
rm -f /etc/ssh/ssh_host_*

shopt -s nullglob
build_cas=(/usr/local/share/ca-certificates/cloud-init-ca-cert*)
if [[ ${KEEP_CA_CERTIFICATES:-false} != true ]] && (( ${#build_cas[@]} )); then
  step "removing the CA certificates given for the build"
  rm -f "${build_cas[@]}"
  update-ca-certificates --fresh >/dev/null
fi

step "removing network settings tied to the build VM's interface"
rm -f /etc/netplan/50-cloud-init.yaml \
  /etc/network/interfaces.d/50-cloud-init

# The image goes to hypervisors (QEMU/KVM, libvirt, VirtualBox) that hand it
# a NoCloud seed CD, a config drive, or nothing at all. cloud-init looks for
# those alone: probing cloud metadata services that are not there stalls
# boot for minutes. With no seed, ds-identify's default would disable
# cloud-init (Ubuntu's images) and leave the VM without network settings,
# since the build's are removed above; notfound=enabled runs it with the
# None datasource instead, whose fallback network config brings up the
# first Ethernet NIC by DHCP whatever its name or model (virtio, e1000).
# A seed found at a later boot is a new instance and takes over.
step "letting cloud-init set up DHCP networking when the VM has no seed"
cat >/etc/cloud/cloud.cfg.d/95-mlflow-image.cfg <<'EOF'
# Written by the MLflow image build: seeds come from a NoCloud CD or a
# config drive; without either, cloud-init still runs (DataSourceNone).
datasource_list: [NoCloud, ConfigDrive, None]
warnings:
  dsid_missing_source: off
EOF
echo 'policy: search,found=all,maybe=none,notfound=enabled' >/etc/cloud/ds-identify.cfg

step "removing package lists, caches, logs and shell history"
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
find /var/log -type f \( -name '*.gz' -o -name '*.[0-9]' \) -delete
find /var/log -type f ! -path '/var/log/journal/*' -exec truncate -s 0 {} +
journalctl --rotate
journalctl --vacuum-time=1s
rm -rf /var/lib/systemd/random-seed /var/tmp/* /tmp/* /root/.ssh \
  /root/.bash_history /root/.cache

step "discarding free blocks, so the compressed image holds only data"
fstrim --verbose --all
