# Packer 1.7 and newer find the qemu builder through this block: run
# `packer init packer/ubuntu-22.04` once before `packer build`.
# Packer 1.6, which has the qemu builder built in, rejects the block: build
# with the other files of this folder only (`make image` does that for you).
packer {
  required_plugins {
    qemu = {
      version = ">= 1.1.0"
      source  = "github.com/hashicorp/qemu"
    }
  }
}
