"""``python -m wasmformer`` is the ``wasmformer`` command."""

from .cli import main

main()
