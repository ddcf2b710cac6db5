# Shared by the scripts: create .venv with python3 and install the project into it, once per
# change of pyproject.toml (a stamp file remembers which extras were installed from which file).
ensure_venv() {
  local extras="$1"
  local python="${PYTHON:-python3}"
  if [ ! -x .venv/bin/python ]; then
    echo "creating .venv with $($python --version)" >&2
    "$python" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
  fi
  local stamp=".venv/.installed-$extras"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "installing systeam-healthchecks[$extras] into .venv" >&2
    .venv/bin/python -m pip install --quiet -e ".[$extras]"
    touch "$stamp"
  fi
}
