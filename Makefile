# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
# Everything installs into .venv from the pinned constraints.txt.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
TEST_JOBS   ?= 2

.PHONY: install migrate run test demo bench bench-readme i18n i18n-review lint lock clean mutate

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

migrate: install  ## bring the database (DATABASE_URL, default trial.db) to the latest schema
	$(BIN)/alembic upgrade head

run: migrate  ## start the bot (needs TELEGRAM_BOT_TOKEN; see .env.example)
	$(BIN)/python -m bot

test: install  ## the whole suite, on SQLite and PostgreSQL: TEST_JOBS workers, then the destructive tests alone
	$(BIN)/python -m pytest -n $(TEST_JOBS) -m "not destructive" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m destructive $(PYTEST_ARGS) || [ $$? -eq 5 ]  # 5: none selected by PYTEST_ARGS

demo: install  ## the whole journey against the local Bot API test server, as a transcript
	$(BIN)/python -m devtools.demo

bench: install  ## the benchmark (quick, about 7 min, into bench/quick/); FULL=1: the issue's sizes, into bench/results.json and bench/throughput.png
	$(BIN)/python -m bench $(if $(FULL),--full,--out bench/quick)

bench-readme: install  ## rewrite the README's benchmark table from bench/results.json (tests/test_bench_readme.py checks it)
	$(BIN)/python -m bench.report

mutate: install  ## mutation testing of the safety-critical code (mutmut 3; slow, not in CI). GROUPS="triage dispatch" for some; MUTATE_JOBS=2 for two workers; RECHECK=1: only the last run's survivors, against today's tests; RESUME=1: go on where an interrupted run stopped
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,mutation]"
	$(BIN)/python -m devtools.mutate $(if $(RECHECK),--recheck) $(if $(RESUME),--resume) $(GROUPS)

i18n: install  ## re-extract strings and merge them into the bn and en catalogs (headers carry Language and Plural-Forms)
	$(BIN)/pybabel extract -F locales/babel.cfg -k N_ -k _ --no-location --sort-output --project ssc-trial-bot -o locales/messages.pot .
	$(BIN)/pybabel update -D messages -i locales/messages.pot -d locales --ignore-obsolete --no-fuzzy-matching

i18n-review: install  ## the side-by-side English/Bangla table of every participant-facing string, for the study team
	$(BIN)/python -m devtools.i18n_review --out i18n-review.csv --html i18n-review.html

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy bot charts cli core domain scheduler models export devtools

lock:  ## re-pin constraints.txt from a clean resolve of pyproject.toml
	rm -rf /tmp/ssc-lock && $(PYTHON) -m venv /tmp/ssc-lock
	/tmp/ssc-lock/bin/python -m pip install --quiet --upgrade pip
	/tmp/ssc-lock/bin/python -m pip install --quiet '.[dev]'
	/tmp/ssc-lock/bin/python -m pip freeze --exclude ssc-trial-bot > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
