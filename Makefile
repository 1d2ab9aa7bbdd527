# Two entry points for a fresh machine (each installs what it needs first):
#   make book   build the HTML book into _build/html (executes every notebook, warnings are errors)
#   make test   unit tests + nbval on every notebook
# and for readers: make lab (JupyterLab on the book's notebooks), make data (download MNIST / Fashion-MNIST).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | cksum | cut -d' ' -f1)
# one torch/BLAS thread per process: the book's small models run fastest that way, and never oversubscribe
RUN_ENV := TQDM_DISABLE=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

.PHONY: install book test lab data bench reproduce check-html clean

install: $(STAMP)
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# Every build executes every notebook (--all: no page is reused from an earlier build, whose inputs may have
# changed), and a failed build removes what it made: `make book` never reports success over stale or partial pages.
book: install
	@rm -f _build/.book-ok
	@$(RUN_ENV) $(VENV)/bin/jupyter-book build . --all -W --keep-going || { \
	  rm -rf _build/html _build/.doctrees _build/jupyter_execute; \
	  echo "make book: FAILED (see the errors above); the partial output was removed, the next build starts afresh" >&2; \
	  exit 1; }
	@touch _build/.book-ok

test: install
	$(RUN_ENV) MPLBACKEND=Agg $(PY) -m pytest tests book --nbval-lax --nbval-current-env -p no:cacheprovider

lab: install
	$(VENV)/bin/jupyter lab book/ $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

data: install
	$(PY) -m clipbook data

bench: install
	$(RUN_ENV) $(PY) benchmarks/bench_clip_cost.py
	$(RUN_ENV) $(PY) benchmarks/bench_pgd.py
	$(RUN_ENV) $(PY) benchmarks/bench_device.py

# every stored result of the book (resumable; see README): written to results/, the book's own folder
reproduce: install
	$(RUN_ENV) $(PY) -m clipbook reproduce --datasets mnist --seeds 0 1 2 --results results
	$(RUN_ENV) $(PY) -m clipbook reproduce --datasets mnist --seeds 0 --baselines --results results
	$(RUN_ENV) $(PY) -m clipbook.repro.fig2_search
	$(RUN_ENV) $(PY) -m clipbook.repro.fig2_search --init
	$(RUN_ENV) $(PY) -m clipbook regression --results results
	$(RUN_ENV) $(PY) -m clipbook.repro.theory
	$(RUN_ENV) $(PY) -m clipbook.repro.fig1
	$(RUN_ENV) $(PY) -m clipbook.repro.certificates --results results

# open every page of the built book in headless Chromium (Debian: apt-get install chromium) and fail on what a
# reader would see broken: raw TeX, stray $ or MyST roles, unformatted floats, tables left as pipes or too wide or
# too tall, images shown shrunk, low-resolution widget frames, unrendered widgets, missing images, and a lambda
# slider that moves nothing (the list is in .ci/check_html.py)
check-html: install
	$(PY) .ci/check_html.py _build/html

clean:
	rm -rf _build
