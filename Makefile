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

# The Try it page runs HFL-Net in the reader's browser with onnxruntime-web, an npm package pinned by
# package-lock.json. Without Node.js/npm (or the registry) the rest of the book still builds, and the
# build and the page say what is missing.
NPM_STAMP := node_modules/.package-lock.json
$(NPM_STAMP): package.json package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --no-audit --no-fund || echo "make book: npm ci failed: the Try it page will not run HFL-Net"; \
	else echo "make book: npm (Node.js 18+) not found: the Try it page will not run HFL-Net; the rest of the book is built"; fi

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
	rm -rf _build
