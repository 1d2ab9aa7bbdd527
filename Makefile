# Two entry points for a fresh machine (each installs what it needs first):
#   make book   build the HTML book into _build/html (executes every notebook, warnings are errors)
#   make test   unit tests + nbval on every notebook
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install book test bench reproduce clean

install: $(STAMP)
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

book: install
	CLIPBOOK_NO_PROGRESS=1 $(VENV)/bin/jupyter-book build . -W --keep-going

test: install
	CLIPBOOK_NO_PROGRESS=1 MPLBACKEND=Agg $(PY) -m pytest tests book --nbval-lax --nbval-current-env -p no:cacheprovider

bench: install
	$(PY) benchmarks/bench_clip_cost.py
	$(PY) benchmarks/bench_pgd.py

# every stored result of the book (resumable; see README)
reproduce: install
	$(PY) -m clipbook reproduce --datasets mnist --seeds 0 1 2
	$(PY) -m clipbook reproduce --datasets fashion --seeds 0 --epochs 4 --eval-size 1000
	$(PY) -m clipbook regression

clean:
	rm -rf _build
