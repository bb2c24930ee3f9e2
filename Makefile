# The two commands of the README: `make run` sets up and runs the shop, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install run test lint clean catalogs messages

install: $(VENV)/.installed catalogs

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The gettext catalogs (quickcart/messages.py tells how to add a text). pip install compiles
# them too (setup.py); compiling again here picks up .po edits made since.
catalogs: $(VENV)/.installed
	$(BIN)/pybabel -q compile -d quickcart/locale -D messages

# After adding, renaming or removing a text in the code: messages.pot from the code (babel.cfg),
# then both .po files updated (new keys empty, unused ones dropped). Babel's warnings about
# f-strings are left out: keys composed at run time are listed in quickcart/i18n_keys.py.
messages: $(VENV)/.installed
	@out=$$($(BIN)/pybabel -q extract -F babel.cfg -o quickcart/locale/messages.pot \
	    --sort-output --add-location=file --strip-comments --project=QuickCart \
	    --version=0.1.0 --copyright-holder=QuickCart --msgid-bugs-address=- . 2>&1); \
	  status=$$?; [ -z "$$out" ] || printf '%s\n' "$$out" | grep -v 'Skipping f-string' >&2; \
	  exit $$status
	$(BIN)/pybabel -q update -i quickcart/locale/messages.pot -d quickcart/locale -D messages \
	    --no-fuzzy-matching --ignore-obsolete --ignore-pot-creation-date

run: install
	$(BIN)/quickcart up

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	-$(BIN)/quickcart services stop
	rm -rf $(VENV)
