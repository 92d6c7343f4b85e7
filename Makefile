# The two commands of the README: `make demo` and `make test`.
# Each sets up what it needs (virtualenv, CPU torch 2.13.0, the package) and then runs.
PY ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed
# mksh, toybox, original-awk: the loopback phone's shell and tools, Android's own (device_agent/loopback/fakephone.py).
DEBS = adb dataset-fashion-mnist chromium original-awk mksh toybox

.PHONY: demo test system-deps clean

system-deps:
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y -q $$missing >/dev/null; \
	  else echo "please install: sudo apt-get install $$missing"; exit 1; fi; fi

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[all,dev]'
	touch $(STAMP)

demo: system-deps $(STAMP)
	$(BIN)/hwnas demo

test: system-deps $(STAMP)
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) demo-output hwnas.db
