# The few commands people run. Each uses .venv, created by scripts/setup_env.sh.
.PHONY: setup demo test test-fast lint format docs bench-kernels bench-lookahead doctor

setup:
	bash scripts/setup_env.sh

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

# The tests not marked slow (under a minute on 2 cores): no whole runs, subprocesses or compiles.
test-fast:
	AUTOLORA_SETUP=if-missing bash scripts/test.sh -m "not slow"

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

format:
	.venv/bin/ruff format . && .venv/bin/ruff check --fix .

# The docs site (docs/ and the API reference) into site/; any warning fails the build.
docs:
	NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --site-dir site

doctor:
	.venv/bin/autolora doctor

bench-kernels:
	.venv/bin/python benchmarks/bench_fused_linear.py

bench-lookahead:
	.venv/bin/python benchmarks/bench_lookahead.py
