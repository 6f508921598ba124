#!/bin/sh
# Build the TypeScript client and run its tests (unit, integration against
# $FERRYD, examples). Exit 77 (meson: skipped) when there is no npm, no
# Node.js >= 20 can be found or fetched (find-node.sh), or the
# dependencies cannot be installed (offline).
case "$0" in */*) cd "${0%/*}" || exit 1 ;; esac
# A node >= 20: the one on PATH, or one fetched from the npm registry.
if ! bin=$(./find-node.sh); then
	echo "no Node.js 20 or newer: skipping the TypeScript client tests"
	exit 77
fi
PATH=$bin:$PATH
export PATH
if ! command -v npm >/dev/null 2>&1; then
	echo "npm not found: skipping the TypeScript client tests"
	exit 77
fi
if [ ! -d node_modules ]; then
	if ! npm ci --no-audit --no-fund; then
		echo "npm ci failed (no registry?): skipping"
		exit 77
	fi
fi
rm -rf dist	# tsc leaves the output of deleted sources behind
npx tsc -p tsconfig.json || exit 1
if [ -f tsconfig.examples.json ]; then
	npx tsc -p tsconfig.examples.json || exit 1
fi
# every test has 120 s at most, whatever it waits for
exec node --test --test-concurrency=1 --test-timeout=120000 dist/test/*.test.js
