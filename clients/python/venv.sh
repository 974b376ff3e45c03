# Sourced by run-tests and run-bench: makes (or reuses) the venv in $venv with the package
# installed editable with its test and bench extras. Needs $here (clients/python) and $venv.
python="${PYTHON:-python3}"
# The stamp records what the venv was installed from; a changed pyproject reinstalls.
stamp="$venv/.rlock-installed"
want="$(cat "$here/pyproject.toml" "$here/venv.sh" | sha256sum | cut -d' ' -f1) $("$python" -c 'import sys; print(sys.version)' | head -1)"
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    echo "rlock: setting up $venv"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -e "$here[test,bench]"
    echo "$want" > "$stamp"
fi

