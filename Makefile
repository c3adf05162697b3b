# Machine Unlearning, Reproduced: build, test and reproduce.
#   make book                         render the book from the committed, executed chapters -> _build/html
#   make test                         unit tests + every chapter on smoke and on paper-smoke (paper models at width 8)
#                                     + book build + every page in headless Chromium
#   make test-paper [CHAPTER=ssd]     every chapter (or one) on paper-smoke with the full-width paper models (long on a CPU)
#   make reproduce PROFILE=cpu [CHAPTER=foundations] [SEEDS=0] [ALLOW_DIRTY=1]   re-execute chapters in place on a
#                                     profile; refuses uncommitted code unless ALLOW_DIRTY=1 (which is recorded)
#   make bench                        training/evaluation throughput here and each chapter's predicted paper time
#   make student                      coursework: each chapter's exercises as a student copy -> _student/<chapter>.ipynb,
#                                     the nbgrader course -> _student/nbgrader/, chapters without solutions -> _student/chapters/
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= cpu
CHAPTER ?=
SEEDS ?=
DEVICE ?= auto
ALLOW_DIRTY ?=

.PHONY: book test test-paper reproduce bench student clean help

help:
	@sed -n '1,10p' Makefile

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.book-installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[book]'
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[book,test]'
	touch $@

book: $(VENV)/.book-installed
	$(VENV)/bin/jupyter-book build . -W --keep-going

test: $(VENV)/.test-installed
	$(PY) -m pytest

test-paper: $(VENV)/.test-installed
	UNLEARNLIB_PAPER_SMOKE=full $(PY) -m pytest tests/test_notebooks.py -k "paper_path$(if $(CHAPTER), and $(CHAPTER))"

reproduce: $(VENV)/.test-installed
	$(PY) -m unlearnlib.book reproduce --profile $(PROFILE) --device $(DEVICE) $(if $(CHAPTER),--chapter $(CHAPTER)) $(if $(SEEDS),--seeds $(SEEDS)) $(if $(filter 1,$(ALLOW_DIRTY)),--allow-dirty)

bench: $(VENV)/.test-installed
	$(PY) -m unlearnlib.bench --device $(DEVICE)

student: $(VENV)/.book-installed
	$(PY) -m unlearnlib.book student --output _student

clean:
	rm -rf _build _student
