# Two commands do all the set-up on a fresh machine: `make study` and `make test`.
# Both create .venv when it is missing and (re)install the project when pyproject.toml changes.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.attrlib-installed
PROFILE ?= default
DATA   ?=
STUDY_ARGS ?=
PORT   ?= 8888
# JupyterLab refuses to start as root (a container) unless told: only then is --allow-root added
LAB_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: install study report test test-all lab filter bench clean help

help:
	@echo "make study [PROFILE=quick|default|claims|thorough|paper] [DATA=DIR]  the whole study (notebooks, figures, tables)"
	@echo "make test                                            install if needed and run the test suite (what CI runs; not -m slow)"
	@echo "make test-all                                        the whole suite, the slow tier included (-m slow: see pyproject.toml)"
	@echo "make report                                          HTML report of the executed study (report/index.html)"
	@echo "make lab [PORT=8888]                                 JupyterLab on notebooks/ with the project's kernel"
	@echo "make filter                                          nbstripout's git filter in this clone (make lab runs it)"
	@echo "make bench                                           speed and memory benchmarks (not part of the tests)"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name attrlib --display-name "attrlib (.venv)" >/dev/null
	touch $(STAMP)

install: $(STAMP)

study: $(STAMP)
	$(VENV)/bin/attrlib study --profile $(PROFILE) $(if $(DATA),--data $(DATA)) $(STUDY_ARGS)
	$(VENV)/bin/attrlib report
	$(if $(DATA),,$(if $(filter default claims thorough,$(PROFILE)),$(VENV)/bin/attrlib readme))

report: $(STAMP)
	$(VENV)/bin/attrlib report

# Two pytest-xdist workers, each taking whole test files (a module's fixtures are made once) in the order collected
# (--no-loadscope-reorder: xdist would start the largest files first, and a worker would sit waiting on the quick
# study's readers), beside the study that tests/conftest.py starts at collection (one kernel, one core: the workers
# lower their priority); its readers come last
TEST_WORKERS ?= 2

# CI's tier: every module, every knob-effect, resume and bad-input test; the slow tier (the whole messy-folder
# study and the like) repeats what this tier covers at a higher cost and runs in `make test-all`
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not slow" --durations=15

test-all: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15

# The kernel works in notebooks/; the notebooks still read and write the root's data/, runs/, figures/ and
# results/ (attrlib.study.session.project_root), so they reuse the runs of `make study`.
lab: $(STAMP) filter
	$(VENV)/bin/jupyter lab $(LAB_ROOT) --port $(PORT) notebooks/

# Committed notebooks stay output-free however they are run: nbstripout's git filter (declared for *.ipynb in
# .gitattributes) strips outputs from what is staged, in this clone's .git/config only. --keep-id keeps the
# cells' ids (nbstripout would renumber them: a diff in every notebook). Outside a git checkout: nothing to do.
NBSTRIPOUT = "$(abspath $(VENV))/bin/python" -m nbstripout --keep-id
filter:
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
	  $(VENV)/bin/nbstripout --install && \
	  git config filter.nbstripout.clean '$(NBSTRIPOUT)' && \
	  git config diff.ipynb.textconv '$(NBSTRIPOUT) -t' && \
	  echo "nbstripout filter installed: notebooks are committed without outputs"; \
	else echo "not a git checkout: no nbstripout filter to install"; fi

bench: $(STAMP)
	@ls benchmarks/*.py >/dev/null 2>&1 || { echo "no benchmarks yet (benchmarks/*.py)"; exit 1; }
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf runs/notebooks report .pytest_cache
