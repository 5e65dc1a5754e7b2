# The README's commands. `make test` installs what the tests need and runs
# them all; `make lint` is what CI checks besides; `make bench` runs the
# benchmarks recorded in BENCHMARKS.md; `make fuzz` the fuzzing run (opt-in,
# about a minute); `make check-deploy` the files in deploy/; `make
# status-page` the status page in a headless browser.
.PHONY: test lint bench fuzz check-deploy status-page

test:
	./scripts/test.sh

lint:
	./scripts/lint.sh

bench:
	./bench/dnsperf.sh
	./bench/dnsperf-ecs.sh
	cargo bench -p meridian-steering --bench decide
	./bench/cluster.sh
	./bench/probes.sh
	cargo bench -p meridian-probes --bench apply
	./bench/fallback.sh
	./bench/proxy.sh
	./bench/scale.sh
	cargo bench -p meridian-steering --bench trees
	./bench/rrl.sh
	./bench/metrics.sh

fuzz:
	./scripts/fuzz.sh

check-deploy:
	./scripts/check-deploy.sh

status-page:
	./scripts/status-page.sh
