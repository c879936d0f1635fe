# Inputs of the ubuntu-22.04 image build. `make image` sets the
# per-build ones (SSH key, seed, output directory); paths are relative to the
# directory Packer runs in, the top of this repository.

variable "base_image_url" {
  type        = string
  description = "Path or URL of the Ubuntu 22.04 LTS (jammy) base image."
  default     = "https://cloud-images.ubuntu.com/releases/22.04/release/ubuntu-22.04-server-cloudimg-amd64.img"
}

variable "base_image_checksum" {
  type        = string
  description = "Checksum of the base image, or file:URL of the publisher's SHA256SUMS."
  default     = "file:https://cloud-images.ubuntu.com/releases/22.04/release/SHA256SUMS"

  validation {
    condition     = substr(var.base_image_checksum, 0, 5) == "file:" || substr(var.base_image_checksum, 0, 7) == "sha256:"
    error_message = "The base_image_checksum must start with file: or sha256:, never none."
  }
}

variable "accelerator" {
  type        = string
  description = "QEMU accelerator: kvm where usable, tcg (software emulation) otherwise."
  default     = "kvm"

  validation {
    condition     = contains(["kvm", "tcg"], var.accelerator)
    error_message = "The accelerator must be kvm or tcg."
  }
}

variable "cpus" {
  type        = number
  description = "Virtual CPUs of the build VM."
  default     = 2
}

variable "memory" {
  type        = number
  description = "Memory of the build VM, in MiB."
  default     = 2048
}

variable "disk_size" {
  type        = string
  description = "Virtual size of the image's disk; the root partition grows to fill it."
  default     = "8G"
}

variable "mlflow_port" {
  type        = number
  description = "Port the MLflow server listens on."
  default     = 5000

  validation {
    condition     = var.mlflow_port >= 1 && var.mlflow_port <= 65535
    error_message = "The mlflow_port must be between 1 and 65535."
  }
}

variable "pip_index_url" {
  type        = string
  description = "Package index for pip in the build VM; empty for PyPI."
  default     = ""
}

variable "wheelhouse" {
  type        = string
  description = "Directory of wheels served to the build VM instead of an index; empty for none."
  default     = ""
}

variable "ssh_private_key_file" {
  type        = string
  description = "Private half of the SSH key generated for this build."
}

variable "seed_files" {
  type        = list(string)
  description = "NoCloud seed (user-data, meta-data, vendor-data) for the build VM."
}

variable "output_directory" {
  type        = string
  description = "Directory that receives the image; it must not exist yet."
  default     = "output/ubuntu-22.04"
}

variable "serial_log" {
  type        = string
  description = "File that receives the build VM's serial console."
  default     = "output/ubuntu-22.04-build-serial.log"
}

variable "keep_ca_certificates" {
  type        = bool
  description = "Leave the extra CA certificates given for the build in the image."
  default     = false
}
