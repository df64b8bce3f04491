"""Offline stand-in for @rules_python//python:defs.bzl: forwards to Bazel 4's native rules."""

load("@bazel_tools//tools/python:toolchain.bzl", _py_runtime_pair = "py_runtime_pair")

py_runtime_pair = _py_runtime_pair
