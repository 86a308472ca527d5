# servetune: the two entry points a newcomer needs, plus provisioning.
#   make demo   run servetune on the bundled example deployment
#   make test   provision TorchServe (cached) and run every test
.PHONY: setup demo test check

setup:
	scripts/setup-torchserve.sh

demo:
	scripts/demo.sh

test:
	scripts/test.sh

check:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
