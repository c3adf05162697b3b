# Machine Unlearning, Reproduced: build, test and reproduce.
#   make book                         render the book from the committed, executed chapters -> _build/html
#   make test                         unit tests + every chapter on smoke and paper-smoke + book build with -W
#   make reproduce PROFILE=cpu [CHAPTER=foundations] [SEEDS=0]   re-execute chapters in place on a profile
#   make bench                        training/evaluation throughput here and each chapter's predicted paper time
#   make student                      copies of the chapters without solutions -> _student/
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= cpu
CHAPTER ?=
SEEDS ?=
DEVICE ?= auto

.PHONY: book test reproduce bench student clean help

help:
	@sed -n '1,7p' Makefile

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

reproduce: $(VENV)/.test-installed
	$(PY) -m unlearnlib.book reproduce --profile $(PROFILE) --device $(DEVICE) $(if $(CHAPTER),--chapter $(CHAPTER)) $(if $(SEEDS),--seeds $(SEEDS))

bench: $(VENV)/.test-installed
	$(PY) -m unlearnlib.bench --device $(DEVICE)

student: $(VENV)/.book-installed
	$(PY) -m unlearnlib.book student --output _student

clean:
	rm -rf _build _student
