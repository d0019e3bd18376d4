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

# Front-end files the built book serves itself (MathJax now; package.json lists them, the lockfile
# pins them). Without npm the book still builds: book/_ext/hfl_book.py then warns, and math loads
# from a CDN, so it shows as raw TeX offline.
NPM_STAMP := node_modules/.package-lock.json

$(NPM_STAMP): package.json package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --no-audit --no-fund; \
	else echo "make book: npm (Node.js) not found, so MathJax is not installed: math will load from a CDN." \
	     "Install Node.js and npm (Debian: apt-get install nodejs npm) for a book that works offline."; fi

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
