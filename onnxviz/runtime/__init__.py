"""The runtime layer: onnxruntime sessions, execution providers, progress.

providers (which providers really work; resolve "auto" | "cpu" | "cuda"),
session (Session with checked feeds and batched runs; get_session's cache keyed
by model bytes), progress (a bar on stderr). Import the modules directly; this
package imports nothing, so ``onnxviz.runtime.providers`` stays cheap.
"""
