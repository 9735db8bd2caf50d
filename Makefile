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
	@echo "  Chengyun demo: http://$(HOST):$(PORT)/   (log in with a demo login above; admin at /admin/, API at /api/v1/docs)"
	@echo "  Background worker for deadline escalation: $(BIN)/chengyun worker   (in another terminal)"
	@echo ""
	$(BIN)/chengyun serve --host $(HOST) --port $(PORT)

test: install
	$(BIN)/pytest -p no:cacheprovider -n 2 --dist loadfile

lint: install
	$(BIN)/ruff check src tests bench

bench: install
	$(BIN)/python bench/locate.py

clean-demo:
	rm -f var/chengyun.sqlite3 var/chengyun.sqlite3-wal var/chengyun.sqlite3-shm
