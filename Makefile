# Shortcuts for the README's two commands (scripts/run.sh, scripts/test.sh).
.PHONY: run test

run:
	scripts/run.sh $(ARGS)

test:
	scripts/test.sh
