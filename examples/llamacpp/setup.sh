#!/bin/sh
# Make a llama.cpp target for readfirst from the sources vendored in the llama-cpp-python
# source distribution: DEST/target (a git repository with this example's files) and
# DEST/fork (a clone to put competing commits in). Never inside readfirst's own repository.
#   pip download --no-deps --no-binary :all: llama-cpp-python -d CACHE
#   examples/llamacpp/setup.sh CACHE/llama_cpp_python-*/vendor/llama.cpp DEST
set -e
src=${1:?usage: setup.sh LLAMA_CPP_SOURCES DEST}
dest=${2:?usage: setup.sh LLAMA_CPP_SOURCES DEST}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$dest"
cp -a "$src" "$dest/target"
cd "$dest/target"
rm -rf .git  # the sdist's copy points at llama-cpp-python's submodule
cp "$here/readfirst.toml" "$here/rf_bench.sh" "$here/rf_build.sh" .
git init -q -b master
git add -A
git -c user.name=readfirst -c user.email=readfirst@localhost commit -qm "llama.cpp $(basename "$src") + readfirst example"
git clone -q "$dest/target" "$dest/fork"
echo "target: $dest/target  fork: $dest/fork"
