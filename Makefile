# The README's commands. `make test` installs what the tests need and runs
# them all; `make lint` is what CI checks besides.
.PHONY: test lint bench

test:
	./scripts/test.sh

lint:
	./scripts/lint.sh

bench:
	./bench/dnsperf.sh
