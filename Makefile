.PHONY: bootstrap demo test lint typecheck pytest bench clean

VENV := .venv/bin

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	$(VENV)/dicomflow demo examples/bone_mask.py

test: bootstrap lint typecheck pytest

lint:
	$(VENV)/ruff check src tests bench examples scripts
	$(VENV)/ruff format --check src tests bench examples scripts

typecheck:
	$(VENV)/mypy

pytest:
	$(VENV)/pytest -q

bench: bootstrap
	$(VENV)/python bench/ingest.py
	$(VENV)/python bench/send.py

clean:
	rm -rf dicomflow-data .pytest_cache .mypy_cache .ruff_cache
