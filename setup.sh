#!/bin/sh
# Quick start, step 1: set everything up on a fresh Debian 12 machine (as root) and run the
# main job, a hello-world container.
set -eu
cd "$(dirname "$0")"
scripts/install-deps
scripts/hello
