build {
  name    = "ubuntu-22.04"
  sources = ["source.qemu.mlflow"]

  provisioner "shell" {
    inline = [
      "echo '==> waiting for cloud-init to finish its first boot'",
      "cloud-init status --wait --long",
      "mkdir -p /tmp/mlflow-install",
    ]
  }

  provisioner "file" {
    source      = "packer/ubuntu-22.04/files/"
    destination = "/tmp/mlflow-install"
  }

  provisioner "file" {
    source      = "requirements/mlflow-py3.9.txt"
    destination = "/tmp/mlflow-install/requirements.txt"
  }

  provisioner "file" {
    source      = "requirements/uv.txt"
    destination = "/tmp/mlflow-install/uv-requirements.txt"
  }

  # pip and uv take the wheels from the build's wheelhouse when Packer serves
  # one, else from the index; install-mlflow.sh makes them trust the VM's CA
  # bundle, which holds any extra CA certificate the build was given.
  provisioner "shell" {
    environment_vars = [
      "MLFLOW_PORT=${var.mlflow_port}",
      "MLFLOW_START=no",
      "INDEX_URL=${var.pip_index_url}",
      "WHEELHOUSE_DIR=${var.wheelhouse}",
    ]
    execute_command = "chmod +x {{ .Path }}; sudo -E env {{ .Vars }} {{ .Path }}"
    inline = [
      "if [ -n \"$INDEX_URL\" ]; then export PIP_INDEX_URL=\"$INDEX_URL\"; fi",
      "if [ -n \"$WHEELHOUSE_DIR\" ]; then export PIP_NO_INDEX=1 PIP_FIND_LINKS=\"http://$PACKER_HTTP_ADDR/\" PIP_TRUSTED_HOST=\"$${PACKER_HTTP_ADDR%:*}\"; fi",
      "/tmp/mlflow-install/install-mlflow.sh /tmp/mlflow-install",
    ]
  }

  provisioner "shell" {
    environment_vars = ["KEEP_CA_CERTIFICATES=${var.keep_ca_certificates}"]
    execute_command  = "chmod +x {{ .Path }}; sudo -E env {{ .Vars }} {{ .Path }}"
    script           = "packer/ubuntu-22.04/files/cleanup-image.sh"
  }

  post-processor "manifest" {
    output     = "${var.output_directory}/packer-manifest.json"
    strip_path = true
    custom_data = {
      profile             = "ubuntu-22.04"
      python_version      = "3.9"
      mlflow_version      = "3.1.4"
      base_image_url      = var.base_image_url
      base_image_checksum = var.base_image_checksum
    }
  }

  post-processor "checksum" {
    checksum_types = ["sha256"]
    output         = "${var.output_directory}/SHA256SUMS"
  }
}
