#!/bin/sh
echo "bazel coverage needs Bazel's coverage tools archive, which this offline setup does not have." >&2
exit 1
