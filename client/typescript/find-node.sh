#!/bin/sh
# Print the directory holding a Node.js >= 20 for the client's build and
# tests: the node on PATH when it is new enough; otherwise (Debian 12's own
# nodejs is 18) Node.js's Linux build from the npm registry, package
# node-linux-<arch> at the version pinned below, fetched once with
# `npm pack` (npm checks the registry's integrity hash) into
# ${XDG_CACHE_HOME:-~/.cache}/ferry/.  Exit 1, saying why, when there is
# no npm or the registry cannot be reached.
NODE_VERSION=20.19.5

if command -v node >/dev/null 2>&1 &&
	node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)'
then
	dirname "$(command -v node)"
	exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
	echo "find-node: no node >= 20 and no npm to fetch one" >&2
	exit 1
fi
case $(uname -m) in
x86_64) arch=x64 ;;
aarch64) arch=arm64 ;;
*) echo "find-node: no Node.js build for $(uname -m) on npm" >&2; exit 1 ;;
esac
dir=${XDG_CACHE_HOME:-$HOME/.cache}/ferry/node-v$NODE_VERSION-linux-$arch
if [ ! -x "$dir/bin/node" ]; then
	tmp=$(mktemp -d) || exit 1
	if ! (cd "$tmp" && npm pack --silent "node-linux-$arch@$NODE_VERSION" \
		>/dev/null && tar xzf node-linux-*.tgz); then
		rm -rf "$tmp"
		echo "find-node: could not fetch node-linux-$arch@$NODE_VERSION" \
		    "from the npm registry" >&2
		exit 1
	fi
	mkdir -p "${dir%/*}" && rm -rf "$dir" && mv "$tmp/package" "$dir"
	rm -rf "$tmp"
fi
echo "$dir/bin"
