# The two commands of the README:
#   make run   set up (once) and start the gateway on the shipped conf.d (embedded issuer, self-signed TLS)
#   make test  set up (once, including the Debian packages the integration tests drive) and run every test
#
# Set-up is idempotent: the venv is rebuilt only when pyproject.toml changes, and Debian packages are
# installed only when their programs are missing.

PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp

# program -> Debian package that provides it; the integration tests drive these real peers.
SYSTEM_PROGRAMS := initdb:postgresql psql:postgresql-client pgbench:postgresql
# file -> Debian package, for libraries (no program to look for): the real pgjdbc driver.
SYSTEM_FILES := /usr/share/java/postgresql.jar:libpostgresql-jdbc-java

.PHONY: run test setup system-deps lint demo

run: setup
	$(VENV)/bin/wardgate serve

demo: setup system-deps
	$(VENV)/bin/wardgate demo

test: setup system-deps
	$(PY) -m pytest $(PYTEST_ARGS)

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

# PostgreSQL's binaries live in /usr/lib/postgresql/<version>/bin, not on PATH.
system-deps:
	@missing=""; \
	for pair in $(SYSTEM_PROGRAMS); do \
	  prog=$${pair%%:*}; pkg=$${pair##*:}; \
	  if ! command -v $$prog >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/$$prog >/dev/null 2>&1; then \
	    missing="$$missing $$pkg"; \
	  fi; \
	done; \
	for pair in $(SYSTEM_FILES); do \
	  file=$${pair%%:*}; pkg=$${pair##*:}; \
	  test -e $$file || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

lint: setup
	$(VENV)/bin/lint-imports
