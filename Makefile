# The README's two commands: `make book` (build the book) and `make test` (run every test).
# Both create .venv at the repository root on first use and reinstall when pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Chapters execute on the CPU preset here; on a GPU machine pass HFL_PRESET=paper.
export HFL_PRESET ?= cpu

.PHONY: book test unit notebooks browser venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ needed, found " + sys.version' 
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[book,test,pinned]'
	touch $(STAMP)

# Front-end files the built book serves itself, listed in package.json and pinned by the lockfile:
# MathJax (the math) and onnxruntime-web (the Try it page runs HFL-Net in the reader's browser).
# Without npm the book still builds: book/_ext/hfl_book.py warns and math loads from a CDN (raw TeX
# offline), and book/_ext/hfl_live.py warns and the Try it page says it cannot run.
NPM_STAMP := node_modules/.package-lock.json

$(NPM_STAMP): package.json package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --no-audit --no-fund || echo "make book: npm ci failed (no registry?): see above; the rest of the book is built."; \
	else echo "make book: npm (Node.js) not found, so MathJax and onnxruntime-web are not installed:" \
	     "math will load from a CDN and the Try it page will not run HFL-Net." \
	     "Install Node.js 18+ and npm (Debian: apt-get install nodejs npm) for a book that works offline."; fi

book: $(STAMP) $(NPM_STAMP)
	HFL_BOOK_BUILD=1 $(BIN)/jupyter-book build . --path-output .
	@echo "The book is in _build/html/index.html"

unit: $(STAMP)
	$(BIN)/python -m pytest tests -m "not browser"

notebooks: $(STAMP)
	$(BIN)/python -m pytest --nbval-lax -p no:cacheprovider $$($(BIN)/python tools/book.py notebooks)

browser: book
	$(BIN)/python -m pytest tests -m browser

test: unit notebooks browser

clean:
	rm -rf _build node_modules
