# Thin wrapper for those who prefer make; ./dev does the work (and needs no make on a fresh machine).
.PHONY: run test
run:
	./dev run
test:
	./dev test
