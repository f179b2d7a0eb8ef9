# Shared by scripts/demo, scripts/test and scripts/bench: install what is missing, idempotently.
# Source it; do not run it. Needs root on Debian/Ubuntu (apt-get).

set -euo pipefail

TL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TL_VENV="${TL_VENV:-$TL_ROOT/.venv}"
TL_EDITABLE="editable_mode=compat"  # how teleradlab is installed in the venv (tl_venv)
export DEBIAN_FRONTEND=noninteractive

tl_say() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }

tl_require_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: $(basename "$0") installs packages and builds network namespaces: run it as root" >&2
    exit 1
  fi
}

tl_apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  tl_say "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

tl_python() {
  # The interpreter for the venv: python3 from PATH (3.11 or newer).
  local py
  py="$(command -v python3 || true)"
  if [ -z "$py" ]; then
    tl_apt_install python3 python3-venv python3-pip
    py="$(command -v python3)"
  fi
  if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "error: teleradlab needs Python 3.11 or newer; $py is $("$py" -V 2>&1)" >&2
    exit 1
  fi
  echo "$py"
}

# The Python environment: exactly the versions of requirements.lock (each file checked against
# its sha256 there: pip --require-hashes), then teleradlab itself, editable, built with the
# locked setuptools and nothing else (--no-deps --no-build-isolation). Editable as a plain path
# entry (editable_mode=compat: the checkout in a .pth file) rather than setuptools' import hook,
# which costs every Python start about 10 ms (it imports pathlib and importlib.util), and a lab
# starts a Python for every C-STORE run. Redone when pyproject.toml, the lock or TL_EDITABLE
# changes. scripts/lock refreshes the lock.
tl_venv() {
  local py stamp want pipi
  py="$(tl_python)"
  if [ ! -x "$TL_VENV/bin/python" ]; then
    tl_say "creating the Python environment in $TL_VENV"
    if ! "$py" -m venv "$TL_VENV" 2>/dev/null; then
      tl_apt_install python3-venv
      rm -rf "$TL_VENV"
      "$py" -m venv "$TL_VENV"
    fi
  fi
  stamp="$TL_VENV/.teleradlab-installed"
  want="$( (cat "$TL_ROOT/pyproject.toml" "$TL_ROOT/requirements.lock"; echo "$TL_EDITABLE") |
    sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    tl_say "installing Python packages (the versions of requirements.lock, then teleradlab)"
    pipi=("$TL_VENV/bin/python" -m pip install -q --disable-pip-version-check)
    "${pipi[@]}" --require-hashes -r "$TL_ROOT/requirements.lock"
    PYTHONWARNINGS="ignore:Compat editable" \
      "${pipi[@]}" --no-deps --no-build-isolation --config-settings "$TL_EDITABLE" -e "$TL_ROOT"
    echo "$want" >"$stamp"
  fi
}

# The Debian packages of the given features (of the default ones when none is given), from the
# one registry of outside programs, lab/host/programs.py, run with python3 before the venv exists.
tl_packages() {
  local py args=() f
  py="$(tl_python)"
  for f in "$@"; do args+=(--feature "$f"); done
  PYTHONPATH="$TL_ROOT" "$py" -P -m lab.host.programs apt-packages "${args[@]}"
}

# Install what the given features need (the default features when none is given).
tl_install_features() {
  local packages
  mapfile -t packages < <(tl_packages "$@")
  [ "${#packages[@]}" -gt 0 ] || { echo "error: the registry named no packages" >&2; exit 1; }
  tl_apt_install "${packages[@]}"
}

# The docker backend: Debian's engine (started in the background, without touching the host's
# firewall or forwarding, when none answers: scripts/docker-engine), debootstrap for the base,
# and docker-compose for the files 'teleradlab compose' writes.
tl_docker() {
  tl_install_features docker compose
  "$TL_ROOT/scripts/docker-engine" start
}

tl_setup() {
  tl_require_root
  tl_install_features
  tl_venv
  export PATH="$TL_VENV/bin:$PATH"
}
