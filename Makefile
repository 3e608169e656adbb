.PHONY: setup test demo

setup:
	bash scripts/setup.sh

test: setup
	.venv/bin/ruff check src tests
	.venv/bin/python -m pytest -q

demo: setup
	.venv/bin/difusi demo --out runs/demo
