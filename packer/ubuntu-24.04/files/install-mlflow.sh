#!/usr/bin/env bash
# Installs the MLflow tracking server as a systemd service: Python
# 3.12 in a venv linked from /opt/mlflow, MLflow 3.17.2 from a
# hash-locked requirements file, state under /var/lib/mlflow.
#
# Usage: install-mlflow.sh SOURCE_DIR
# SOURCE_DIR holds requirements.txt, uv-requirements.txt (optional: without
# it pip installs the requirements), mlflow.env, mlflow.service,
# mlflow-server, mlflow-prepare-db, mlflowctl, mlflow-motd, the
# mlflow-backup service and timer and mlflow-settings.service. pip reads its
# usual PIP_* variables (PIP_INDEX_URL, PIP_FIND_LINKS, PIP_CERT, ...) and
# pip.conf, and uv gets the same values, so a private index or a proxy's CA
# certificate works here too; should uv fail, pip installs MLflow.
#
# Environment:
#   MLFLOW_PORT    override the port written to mlflow.env
#   MLFLOW_START   "yes" (default) starts the service; "no" only enables it
set -euo pipefail

src=${1:?usage: install-mlflow.sh SOURCE_DIR}
python=python3.12
venv=/opt/mlflow
state=/var/lib/mlflow
config=/etc/mlflow
libexec=/usr/local/libexec/mlflow

step() {
  echo "==> $*"
}

# Installs only the Debian packages that are missing, so a base image that
# already has them needs no package index at all.
apt_install() {
  local missing=()
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null \
      | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if (( ${#missing[@]} == 0 )); then
    return 0
  fi
  step "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
}

install_python() {
  apt_install "$python" "$python-venv" sqlite3
}

create_user() {
  if ! id mlflow >/dev/null 2>&1; then
    step "creating system user mlflow"
    useradd --system --user-group --home-dir "$state" --no-create-home \
      --shell /usr/sbin/nologin mlflow
  fi
  install -d -o mlflow -g mlflow -m 0750 "$state" "$state/artifacts"
  install -d -o root -g mlflow -m 0750 "$config"
}

install_venv() {
  # The system's CA bundle, unlike pip's own, holds the certificates added
  # with cloud-init's ca_certs or update-ca-certificates (proxies, private
  # indexes).
  if [[ -z ${PIP_CERT:-} && -f /etc/ssl/certs/ca-certificates.crt ]]; then
    export PIP_CERT=/etc/ssl/certs/ca-certificates.crt
  fi
  # Each install is a venv of its own, named for the release and the lock,
  # and $venv links to it: `mlflowctl upgrade` builds the next one beside it.
  local target
  target=$venv-3.17.2-$(sha256sum "$src/requirements.txt" | cut -c1-8)
  if [[ ! -x $target/bin/python ]]; then
    step "creating venv $target"
    "$python" -m venv "$target"
  fi
  local scratch installed=no
  if [[ -f $src/uv-requirements.txt ]]; then
    scratch=$(mktemp -d /var/tmp/mlflow-uv.XXXXXX)
    cleanup+=("$scratch")
    if bootstrap_uv "$scratch"; then
      step "installing MLflow 3.17.2 with uv (hash-checked)"
      if uv_install "$scratch" "$("$target/bin/pip" config list 2>/dev/null || true)" \
        --quiet --python "$target/bin/python" \
        --require-hashes --no-deps --compile-bytecode -r "$src/requirements.txt"; then
        installed=yes
      else
        echo "uv could not install MLflow; pip tries instead" >&2
      fi
    fi
  fi
  if [[ $installed == no ]]; then
    step "installing MLflow 3.17.2 with pip (hash-checked)"
    "$target/bin/pip" install --no-cache-dir --disable-pip-version-check \
      --require-hashes --no-deps -r "$src/requirements.txt"
  fi
  install -m 0644 "$src/requirements.txt" "$target/requirements.txt"
  if [[ -d $venv && ! -L $venv ]]; then
    rm -rf "$venv"
  fi
  ln -sfn "$target" "$venv"
}

# Installs the hash-locked uv into a venv under the scratch folder $1;
# fails (and the install goes on with pip) where no uv wheel fits the VM.
# Under an emulated CPU uv installs MLflow about twice as fast as pip.
bootstrap_uv() {
  local scratch=$1
  step "installing uv (hash-checked)"
  if "$python" -m venv "$scratch/venv" \
    && "$scratch/venv/bin/pip" install --quiet --no-cache-dir --disable-pip-version-check \
      --require-hashes --no-deps --only-binary=:all: -r "$src/uv-requirements.txt"; then
    return 0
  fi
  echo "uv could not be installed; pip installs MLflow instead" >&2
  return 1
}

# The value pip uses for setting $2 (index-url, find-links, ...) according
# to `pip config list` ($1): a PIP_* variable (":env:") before a pip.conf.
pip_setting() {
  local config=$1 key=$2 value
  value=$(sed -n "s/^:env:\.${key}='\(.*\)'\$/\1/p" <<<"$config" | tail -n 1)
  if [[ -z $value ]]; then
    value=$(sed -n "s/^[a-z]*\.${key}='\(.*\)'\$/\1/p" <<<"$config" | tail -n 1)
  fi
  printf '%s' "$value"
}

# `uv pip install` with the uv of the scratch folder $1, its cache there,
# and the package index, find-links, trusted host and CA bundle pip would
# use according to `pip config list` ($2): uv reads neither PIP_* variables
# nor pip.conf.
uv_install() {
  local scratch=$1 config=$2
  shift 2
  local settings=(UV_CACHE_DIR="$scratch/cache") options=() value
  value=$(pip_setting "$config" index-url)
  [[ -n $value ]] && settings+=(UV_DEFAULT_INDEX="$value")
  value=$(pip_setting "$config" extra-index-url)
  [[ -n $value ]] && settings+=(UV_INDEX="$value")
  value=$(pip_setting "$config" find-links)
  [[ -n $value ]] && settings+=(UV_FIND_LINKS="$value")
  value=$(pip_setting "$config" trusted-host)
  [[ -n $value ]] && settings+=(UV_INSECURE_HOST="$value")
  value=$(pip_setting "$config" cert)
  [[ -n $value ]] && settings+=(SSL_CERT_FILE="$value")
  # uv has no variable for this one.
  value=$(pip_setting "$config" no-index)
  [[ ${value,,} =~ ^(1|true|yes|on)$ ]] && options+=(--no-index)
  env "${settings[@]}" "$scratch/venv/bin/uv" pip install "${options[@]}" "$@"
}

# Installs MLFLOW_EXTRA_PIP_PACKAGES (environment, else the settings file)
# into the venv. They come from the index without hash checks; the
# versions already installed are held as constraints, so an extra package
# cannot replace a locked one.
install_extra_packages() {
  local extra=${MLFLOW_EXTRA_PIP_PACKAGES:-}
  if [[ -z $extra && -f $src/mlflow.env ]]; then
    extra=$(sed -n 's/^MLFLOW_EXTRA_PIP_PACKAGES=//p' "$src/mlflow.env" | tail -n 1)
  fi
  extra=${extra//\"/}
  local packages=()
  read -r -a packages <<<"$extra"
  if (( ${#packages[@]} == 0 )); then
    return 0
  fi
  step "installing extra packages (not hash-checked): ${packages[*]}"
  "$venv/bin/pip" freeze --all --exclude-editable >"$venv/constraints.txt"
  "$venv/bin/pip" install --no-cache-dir --disable-pip-version-check \
    -c "$venv/constraints.txt" "${packages[@]}"
}

# Writes KEY=VALUE into mlflow.env, replacing the line that sets KEY.
set_setting() {
  local key=$1 value=$2
  sed -i "s|^${key}=.*|${key}=${value}|" "$config/mlflow.env"
}

install_service() {
  step "installing mlflow.service"
  install -d -m 0755 "$libexec"
  install -m 0755 "$src/mlflow-server" "$libexec/mlflow-server"
  install -m 0644 "$src/mlflow-prepare-db" "$libexec/mlflow-prepare-db"
  install -m 0644 "$src/mlflow.service" /etc/systemd/system/mlflow.service
  install -m 0644 "$src/mlflow-backup.service" /etc/systemd/system/mlflow-backup.service
  install -m 0644 "$src/mlflow-backup.timer" /etc/systemd/system/mlflow-backup.timer
  install -m 0644 "$src/mlflow-settings.service" /etc/systemd/system/mlflow-settings.service
  install -m 0755 "$src/mlflowctl" /usr/local/bin/mlflowctl
  install -d -m 0755 /etc/update-motd.d
  install -m 0755 "$src/mlflow-motd" /etc/update-motd.d/60-mlflow
  # A settings file from an earlier install holds the user's choices.
  if [[ ! -e $config/mlflow.env ]]; then
    install -o root -g mlflow -m 0640 "$src/mlflow.env" "$config/mlflow.env"
  fi
  if [[ -n ${MLFLOW_PORT:-} ]]; then
    set_setting MLFLOW_PORT "$MLFLOW_PORT"
  fi
  systemctl daemon-reload
  systemctl enable mlflow.service mlflow-backup.timer
}

cleanup=()
remove_scratch() {
  if (( ${#cleanup[@]} > 0 )); then
    rm -rf "${cleanup[@]}"
  fi
}
trap remove_scratch EXIT

main() {
  if (( EUID != 0 )); then
    echo "install-mlflow.sh: run it as root (sudo)" >&2
    exit 1
  fi
  local start=$SECONDS
  install_python
  create_user
  install_venv
  install_extra_packages
  install_service
  if [[ ${MLFLOW_START:-yes} == yes ]]; then
    step "starting mlflow.service"
    systemctl restart mlflow.service
    systemctl start mlflow-backup.timer
  fi
  step "MLflow 3.17.2 installed in $(( SECONDS - start )) s"
}

main "$@"
