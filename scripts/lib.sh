# Shared by scripts/test and scripts/demo (sourced, not run): find Python >= 3.11, create .venv,
# install the project with the given extras, again only when pyproject.toml has changed.

python_ok() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}

# ensure_venv EXTRAS   (sets $venv; the tools are in $venv/bin afterwards)
ensure_venv() {
    local extras="$1" me python="" candidate wanted stamp
    me="scripts/$(basename "$0")"
    venv=".venv"
    stamp="$venv/.vocabsync-install-$extras"

    if [[ ! -x "$venv/bin/python" ]]; then
        for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
            if [[ -n "$candidate" ]] && command -v "$candidate" >/dev/null 2>&1 \
                && python_ok "$candidate"; then
                python="$candidate"
                break
            fi
        done
        if [[ -z "$python" ]]; then
            echo "$me: Python >= 3.11 is required but none was found" \
                "(tried \$PYTHON, python3.13, python3.12, python3.11, python3)." >&2
            echo "Install Python 3.11+ or point PYTHON at one: PYTHON=/usr/bin/python3.11 $me" >&2
            exit 1
        fi
        echo "$me: creating $venv with $("$python" --version 2>&1)" >&2
        "$python" -m venv "$venv"
    fi
    if ! python_ok "$venv/bin/python"; then
        echo "$me: $venv uses $("$venv/bin/python" --version 2>&1), Python >= 3.11 is required;" \
            "remove $venv and run again (optionally with PYTHON=python3.11)." >&2
        exit 1
    fi
    wanted="$("$venv/bin/python" -c \
        'import hashlib; print(hashlib.sha256(open("pyproject.toml", "rb").read()).hexdigest())')"
    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$wanted" ]]; then
        echo "$me: installing vocabsync[$extras] into $venv" >&2
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[$extras]"
        echo "$wanted" >"$stamp"
    fi
}
