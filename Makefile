# make run   - create .venv, install, run the workflow's `all` on the tiny default config
#              (CONFIG=file... for another run: every run's files live in runs/<run_name>/)
# make test-fast - the same install plus test tools, then the unit tier (tests/unit: no workflow
#              run, no server, under 2 minutes)
# make test  - the same install plus test tools, then the whole test suite (tests/unit and
#              tests/integration, as CI runs it)
# make lint  - ruff and snakemake --lint
# make chat  - the gradio chatbot on a run's newest release, on http://127.0.0.1:7860
# make serve - an OpenAI-compatible API on a run's newest release, on http://127.0.0.1:8000/v1
# make clean - remove a run's folder (CONFIG=... as for make run)

VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
TORCH := $(shell grep '^torch==' requirements.txt)
export PATH := $(abspath $(VENV))/bin:$(PATH)
# llama-cpp-python (the GGUF releases' quantizer) has no wheel on PyPI: pip compiles llama.cpp,
# on every core of the machine rather than on one
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc)

.PHONY: install dev run test test-fast system-test-deps lint chat serve slurm-up slurm-down clean

install: $(VENV)/.installed
dev: $(VENV)/.dev-installed

# torch first (a local CPU wheel here; the CUDA build of the same version on GPU machines),
# so that nothing later pulls another torch; then OpenNMT-py without its stale torch pin.
$(VENV)/.installed: requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) $(TORCH)
	$(PIP) -r requirements.txt
	$(PIP) --no-deps -r requirements-nodeps.txt
	$(PIP) --no-deps -e .
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed requirements-dev.txt
	$(PIP) -r requirements-dev.txt
	touch $@

# CONFIG: the config files of the run (config.yaml unless given), as Snakemake merges them.
CONFIG ?=
CONFIGS = $(or $(CONFIG),config.yaml)
CONFIG_ARGS = $(if $(CONFIG),--configfile $(CONFIG))
RUN_DIR = $(shell $(PY) -m vicuna.run_layout $(CONFIGS))

run: install
	snakemake --profile profiles/local all $(CONFIG_ARGS)
	@$(PY) -m vicuna.run_layout --summary $(if $(CONFIG),--given) $(CONFIGS)

# As root (CI, a fresh machine), the tests' system parts are installed and started too:
# Debian's Chromium for the browser test, graphviz for the README's rule graph command, and a
# single-node SLURM cluster for the profile's tests (stopped again afterwards). Elsewhere those
# tests skip, saying why.
# The unit tier on both cores (its tests share nothing); the integration tier one test at a time
# (one tiny run, one SLURM cluster, ports), both always run.
test: dev
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory system-test-deps; fi
	$(PY) -m pytest -ra --durations=10 -n 2 tests/unit; unit=$$?; \
	$(PY) -m pytest -ra --durations=15 tests/integration; integration=$$?; \
	if [ "$$(id -u)" = 0 ]; then bash tests/slurm/cluster.sh down >/dev/null 2>&1; fi; \
	[ $$unit = 0 ] && [ $$integration = 0 ]

test-fast: dev
	$(PY) -m pytest -ra --durations=10 -n 2 tests/unit

system-test-deps:
	command -v chromium >/dev/null && command -v dot >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium graphviz >/dev/null)
	bash tests/slurm/cluster.sh up

lint: dev
	ruff check .
	snakemake --lint

# The chatbot on the newest release of a run (built first if needed): MODE=py, ct2 or gguf, the run of
# CONFIG (config.yaml unless given; several files as Snakemake merges them, in quotes).
MODE ?= ct2
PORT ?= 7860
chat: install
	snakemake --profile profiles/local $(RUN_DIR)/translate_opts_$(MODE).yaml $(CONFIG_ARGS)
	python scripts/chatbot.py -inference_config_file $(RUN_DIR)/translate_opts_$(MODE).yaml \
		-inference_mode $(MODE) -max_context_length 512 -server_port $(PORT)

# The same release behind an OpenAI-compatible API (scripts/serve_api.py): MODE=py, ct2 or gguf,
# PORT=8000 by default; SYSTEM=ignore|task|refuse says what a chat's system messages become
# (docs/api.md); VICUNA_API_KEY=... asks clients for that key.
SYSTEM ?= ignore
serve: PORT = 8000
serve: install
	snakemake --profile profiles/local $(RUN_DIR)/translate_opts_$(MODE).yaml $(CONFIG_ARGS)
	python scripts/serve_api.py -inference_config_file $(RUN_DIR)/translate_opts_$(MODE).yaml \
		-inference_mode $(MODE) -max_context_length 512 --port $(PORT) --system_messages $(SYSTEM)

slurm-up:
	bash tests/slurm/cluster.sh up

slurm-down:
	bash tests/slurm/cluster.sh down

# What the workflow made for CONFIG: its run folder, runs/<run_name>/ (every artifact, log and
# timing), and for a config that builds its own base (the tiny default) the synthetic/ sources.
# Never llama/ or any other input the config names: no rule makes those.
clean: install
	rm -rf $(RUN_DIR)
	@if $(PY) -c 'import sys; from vicuna.run_layout import merged_config; \
		sys.exit("synthetic" not in merged_config(sys.argv[1:]))' $(CONFIGS); then \
		echo "rm -rf synthetic"; rm -rf synthetic; fi
