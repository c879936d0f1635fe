# MLflow tracking server VM images. `make` alone lists targets and variables.

UBUNTU ?= 24.04
DISTRO ?=
PROFILE := $(if $(DISTRO),$(DISTRO),ubuntu-$(UBUNTU))
PORT ?= 5000
IMAGE ?= output/$(PROFILE)/mlflow-$(PROFILE).qcow2
# make verify names the profile only when asked to; otherwise the image's
# manifest.json tells.
PROFILE_ARG := $(if $(filter command line environment,$(origin UBUNTU) $(origin DISTRO)),\
  --profile $(PROFILE))
TEST_PROFILE := debian-12
TEST_IMAGE := output/$(TEST_PROFILE)/mlflow-$(TEST_PROFILE).qcow2

VENV ?= .venv
PY := $(VENV)/bin/python
CLI := $(PY) -m mlflow_vm
SOURCES := $(shell find profiles templates requirements/mlflow-* requirements/uv.txt \
             scripts/build-debian-base.sh \
             mlflow_vm/build.py mlflow_vm/render.py mlflow_vm/wheelhouse.py \
             mlflow_vm/base_image.py mlflow_vm/profiles.py -type f 2>/dev/null)

# make load and bench measure debian-12, the profile every machine can build,
# unless UBUNTU or DISTRO names another.
BENCH_PROFILE := $(strip $(if $(filter command line environment,\
  $(origin UBUNTU) $(origin DISTRO)),$(PROFILE),debian-12))
BENCH_IMAGE := output/$(BENCH_PROFILE)/mlflow-$(BENCH_PROFILE).qcow2
CLIENTS ?= 32
DURATION ?= 60
CPUS ?= 2
MEMORY ?= 4096
SEED_USER ?= mlflow-admin
ALLOWED_HOSTS ?= *
USER_DATA ?= output/$(PROFILE)-user-data
# SEED and SSH_KEY default in the CLI: output/seed.iso, and the first
# ~/.ssh/id_*.pub that exists (skipped by make user-data if none does).
# Values reach it through the environment, never spliced into a command
# line, so spaces and quotes in them stay intact.

export PROFILE PORT ACCEL BASE_IMAGE BASE_IMAGE_CHECKSUM CA_CERTIFICATES \
  KEEP_CA_CERTIFICATES PIP_INDEX_URL WHEELHOUSE FORCE CPUS MEMORY IMAGE SEED SSH_KEY \
  SEED_USER ASK_PASSWORD PASSWORD_FILE ALLOWED_HOSTS PIP_PACKAGES USER_DATA VM_NAME \
  LIBVIRT_NETWORK OUTPUT_DIR CLIENTS DURATION SETTINGS BACKEND_URI

.DEFAULT_GOAL := help
.PHONY: help deps render lint unit base image test e2e verify lock profiles bench load clean \
  libvirt vbox seed user-data

help: ## Show the targets and variables
	@echo "Usage: make TARGET [VARIABLE=value ...]"
	@echo
	@echo "Targets:"
	@awk -F ':.*## ' '/^[a-z0-9-]+:.*## / { printf "  %-10s %s\n", $$1, $$2 }' \
	  $(MAKEFILE_LIST)
	@echo
	@echo "Variables:"
	@echo "  UBUNTU=22.04|24.04     Ubuntu version to build (default 24.04)"
	@echo "  DISTRO=debian-12       build another profile instead of Ubuntu"
	@echo "  PORT=5000              port the MLflow server listens on"
	@echo "  ACCEL=kvm|tcg          QEMU accelerator (default: KVM when usable)"
	@echo "  BASE_IMAGE=path|url    base image instead of the profile's"
	@echo "  BASE_IMAGE_CHECKSUM=   sha256:<hex> or file:<SHA256SUMS> for it"
	@echo "  CA_CERTIFICATES=file   extra CA certificates (PEM) for the build"
	@echo "  KEEP_CA_CERTIFICATES=1 leave them in the image"
	@echo "  PIP_INDEX_URL=url      package index for the build VM"
	@echo "  WHEELHOUSE=no          let the build VM download wheels itself"
	@echo "  FORCE=1                with make base: rebuild the base image"
	@echo "  MLFLOW_VM_CACHE=dir    download cache (default ~/.cache/mlflow-vm)"
	@echo "  IMAGE=path.qcow2       image for make verify, libvirt, vbox"
	@echo "  CPUS=2 MEMORY=4096     virtual CPUs and MiB for make libvirt, vbox"
	@echo "  VM_NAME=name           libvirt domain name (default: the image's name)"
	@echo "  LIBVIRT_NETWORK=default  libvirt network the VM joins"
	@echo "  OUTPUT_DIR=dir         where make libvirt, vbox write (default: beside the image)"
	@echo "  SEED=output/seed.iso   seed ISO written by make seed, attached by libvirt"
	@echo "                         (output/seed.iso only when it exists)"
	@echo "  SSH_KEY=file.pub       public key for make seed, user-data (default ~/.ssh/id_*.pub)"
	@echo "  SEED_USER=mlflow-admin login user make seed creates"
	@echo "  ASK_PASSWORD=yes       make seed prompts for a console password for it"
	@echo "  PASSWORD_FILE=file     make seed reads that password from the file's first line"
	@echo "  ALLOWED_HOSTS=* PIP_PACKAGES='a b'  settings of make user-data"
	@echo "  USER_DATA=file         where make user-data writes (default output/<profile>-user-data)"
	@echo "  SETTINGS=file          KEY=VALUE server settings (database, bucket, login) for"
	@echo "                         make seed, user-data; checked against UBUNTU/DISTRO's image"
	@echo "  VERIFY_ARGS=...        extra pytest options for make verify and e2e"
	@echo "  CLIENTS=32 DURATION=60 client threads and seconds per server for make load"
	@echo "  BACKEND_URI=uri        make load: SQLite against this database instead"

$(VENV)/.installed: requirements/dev.txt scripts/make-venv.sh
	@scripts/install-host-packages.sh
	@scripts/make-venv.sh $(VENV)

deps: $(VENV)/.installed ## Install host packages and the Python environment

profiles: deps ## List the supported profiles
	@$(CLI) profiles

render: deps ## Render templates/ into packer/ and cloud-init/
	@$(CLI) render

lint: deps ## Static checks: HCL, packer fmt/validate, cloud-init, systemd, shell
	@$(CLI) lint

unit: deps ## Fast tests: rendering, profiles, bad input (seconds)
	@$(PY) -m pytest -q tests

lock: deps ## Regenerate the hash-locked requirements of the images
	@$(CLI) lock

base: deps ## Build the project's own base image (DISTRO=debian-12)
	@$(CLI) base --profile $(PROFILE) $(if $(FORCE),--force)

image: deps ## Build the image of UBUNTU=... or DISTRO=... with Packer
	@$(CLI) build --profile $(PROFILE)

$(TEST_IMAGE): $(SOURCES) | $(VENV)/.installed
	@$(CLI) build --profile $(TEST_PROFILE)

e2e: $(TEST_IMAGE) ## Boot the debian-12 image and verify it end to end
	@$(PY) -m pytest -p no:cacheprovider -v -rs --durations=15 verify --image=$(TEST_IMAGE) \
	  $(VERIFY_ARGS)

test: lint unit e2e ## Everything CI runs: lint, unit tests, end to end

verify: deps ## Verify a built image: IMAGE=path.qcow2 (PROFILE from UBUNTU/DISTRO)
	@$(PY) -m pytest -p no:cacheprovider -v -rs verify --image=$(IMAGE) $(PROFILE_ARG) \
	  $(VERIFY_ARGS)

bench: deps ## Measure builds (cold, warm), boot time, sizes, pip vs uv in the guest
	@$(CLI) bench --profile $(BENCH_PROFILE)

load: deps ## Load IMAGE's MLflow and the tutorial's server (or SQLite and BACKEND_URI) on one VM
	@IMAGE="$(if $(filter command line environment,$(origin IMAGE)),$$IMAGE,$(BENCH_IMAGE))" \
	  $(CLI) load --profile $(BENCH_PROFILE)

libvirt: deps ## Write a libvirt domain XML for IMAGE (SEED= attaches a seed CD)
	@$(CLI) libvirt

vbox: deps ## Convert IMAGE to VirtualBox: a VDI and an OVA beside it (or in OUTPUT_DIR)
	@$(CLI) vbox

seed: deps ## Seed ISO with a sudo login for SSH_KEY (and SETTINGS): attach it as a CD
	@$(CLI) seed

user-data: deps ## Cloud user-data with PORT, ALLOWED_HOSTS, PIP_PACKAGES, SSH_KEY, SETTINGS
	@$(CLI) user-data

clean: ## Remove built images and logs (keeps the download cache)
	rm -rf output
