# Chengyun — the two commands: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN     = $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
CASES  ?= 3000

.PHONY: demo test install lint bench serve worker clean-demo

$(BIN)/chengyun: pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is needed ($(PYTHON) not found; set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@

install: $(BIN)/chengyun
	$(BIN)/chengyun compile_catalogs

demo: install
	$(BIN)/chengyun migrate --noinput
	$(BIN)/chengyun load-demo --cases $(CASES)
	@echo ""
	@echo "  Chengyun demo: http://$(HOST):$(PORT)/   (public portal; staff log in at /login/ with a demo login above)"
	@echo "  Admin at /admin/, JSON API at /api/v1/docs, Open311 at /open311/v2/discovery.json"
	@echo "  Running beside the server: the worker (deadline escalation, vital-sign sweeps, messages to"
	@echo "  reporters, written to var/mail/; var/worker.log)"
	@echo "  and the sensor simulator (generated live readings; var/simulator.log). Ctrl+C stops all three."
	@echo ""
	@trap 'kill $$W $$S 2>/dev/null' EXIT INT TERM; \
	  export CHENGYUN_PUBLIC_URL=$${CHENGYUN_PUBLIC_URL:-http://$(if $(filter 0.0.0.0 ::,$(HOST)),127.0.0.1,$(HOST)):$(PORT)}; \
	  $(BIN)/chengyun worker > var/worker.log 2>&1 & W=$$!; \
	  $(BIN)/chengyun simulate-sensors --via db > var/simulator.log 2>&1 & S=$$!; \
	  CHENGYUN_SHOW_DEMO_LOGINS=1 $(BIN)/chengyun serve --host $(HOST) --port $(PORT)

test: install
	$(BIN)/pytest -p no:cacheprovider -n 2 --dist loadfile

lint: install
	$(BIN)/ruff check src tests bench

bench: install
	$(BIN)/python bench/locate.py

clean-demo:
	rm -f var/chengyun.sqlite3 var/chengyun.sqlite3-wal var/chengyun.sqlite3-shm
