# Sourced by table_mutants.sh and dispatch_mutants.sh: `mutant NAME FILE SED-EXPRESSION
# TEST-SELECTION` applies one hand-made mutant, runs the SQLite half of the selected tests
# of $T, expects a failure, and restores the file (also when interrupted). Sets status=1
# when a mutant survives or no longer applies.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PY=${PY:-.venv/bin/python}
status=0

mutant() {  # name file sed-expression test-selection
    local name=$1 file=$2 expr=$3 select=$4
    cp "$file" "$file.orig"
    trap 'mv "$file.orig" "$file"; exit 130' INT TERM PIPE
    sed -i "$expr" "$file"
    if cmp -s "$file" "$file.orig"; then
        echo "MUTANT NOT APPLIED: $name ($file)"; status=1
    elif $PY -m pytest -q -p no:cacheprovider -x "$T" -k "$select and not postgres" >/tmp/mutant.log 2>&1; then
        echo "SURVIVED: $name"; status=1
    else
        echo "killed:   $name  by $(grep -m1 -o 'FAILED [^ ]*' /tmp/mutant.log || grep -m1 -o 'ERROR tests/[^ ]*' /tmp/mutant.log)"
    fi
    mv "$file.orig" "$file"
    trap - INT TERM PIPE
}
