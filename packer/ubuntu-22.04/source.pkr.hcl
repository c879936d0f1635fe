locals {
  image_name = "mlflow-ubuntu-22.04"

  # The CPU model for each accelerator: the host's own under KVM, every
  # feature QEMU can emulate under TCG.
  cpu_model = {
    kvm = "host"
    tcg = "max"
  }
}

source "qemu" "mlflow" {
  accelerator = var.accelerator
  cpus        = var.cpus
  memory      = var.memory
  headless    = true

  disk_image         = true
  iso_url            = var.base_image_url
  iso_checksum       = var.base_image_checksum
  disk_size          = var.disk_size
  disk_interface     = "virtio"
  disk_discard       = "unmap"
  disk_detect_zeroes = "unmap"
  disk_compression   = true
  format             = "qcow2"
  output_directory   = var.output_directory
  vm_name            = "${local.image_name}.qcow2"

  cd_files = var.seed_files
  cd_label = "cidata"

  net_device        = "virtio-net"
  vnc_bind_address  = "127.0.0.1"
  http_bind_address = "127.0.0.1"
  http_directory    = var.wheelhouse
  qemuargs = [
    ["-cpu", local.cpu_model[var.accelerator]],
    ["-netdev", "user,id=user.0,hostfwd=tcp:127.0.0.1:{{ .SSHHostPort }}-:22"],
    ["-serial", "file:${var.serial_log}"],
  ]

  communicator         = "ssh"
  ssh_username         = "ubuntu"
  ssh_private_key_file = var.ssh_private_key_file
  ssh_timeout          = "20m"

  # The build user goes last, once its session is over.
  shutdown_command = "sudo sh -c 'userdel --force --remove ubuntu; rm -f /etc/sudoers.d/90-cloud-init-users; shutdown -P now'"
  shutdown_timeout = "5m"
}
